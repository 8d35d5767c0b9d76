{{/* Names, labels and the environment shared by every template. */}}

{{- define "email-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "email-service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "email-service.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "email-service.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "email-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "email-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "email-service.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "email-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "email-service.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the secret settings: the operator's, or the one this chart makes. */}}
{{- define "email-service.secretName" -}}
{{- default (include "email-service.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
A setting as the string its environment variable gets. Helm reads numbers in values files
as float64, which would print 2592000 as 2.592e+06: whole numbers are printed as integers.
*/}}
{{- define "email-service.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* `config` as data entries: one key per environment variable. */}}
{{- define "email-service.configData" -}}
{{- range $name, $value := .Values.config }}
{{ $name }}: {{ include "email-service.envValue" $value | quote }}
{{- end }}
{{- end }}

{{/* `secrets` as stringData entries: one key per environment variable. */}}
{{- define "email-service.secretData" -}}
{{- range $name, $value := .Values.secrets }}
{{ $name }}: {{ include "email-service.envValue" $value | quote }}
{{- end }}
{{- end }}

{{/* The port a role serves /health, /ready and /metrics on (and the API, for `api`). */}}
{{- define "email-service.port" -}}
{{- $var := ternary "EMAIL_SERVICE_HTTP_PORT" "EMAIL_SERVICE_API_PORT" (eq .role "worker") }}
{{- include "email-service.envValue" (index .root.Values.config $var) }}
{{- end }}

{{/* Pod settings every pod of the chart shares (the roles and the migration job). */}}
{{- define "email-service.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.serviceAccountName }}
serviceAccountName: {{ .Values.serviceAccountName }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir: {}
{{- end }}

{{/* Container settings every container of the chart shares. */}}
{{- define "email-service.containerCommon" -}}
image: {{ include "email-service.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end }}
