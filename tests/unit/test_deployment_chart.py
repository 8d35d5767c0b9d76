"""The Helm chart: its values name every setting the code reads, and Helm lints and renders it.

Helm itself does the linting and rendering: helm-python-sdk (a dev dependency) binds Helm's
Go SDK, so ``helm lint`` and ``helm template`` run in-process without a ``helm`` binary.
"""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import pytest
import yaml

from email_service.settings import Settings
from email_service.worker.process import SHUTDOWN_TIMEOUT_S
from tests.deployment import CHART, describe_difference, load_yaml, setting_names

#: Values that switch on every optional part of the chart.
EVERYTHING_ON: dict[str, Any] = {
    "existingSecret": "email-service-secrets",
    "api": {"autoscaling": {"enabled": True}},
    "metrics": {"serviceMonitor": {"enabled": True}},
    "networkPolicy": {
        "enabled": True,
        "egress": {"enabled": True, "extra": [{"ports": [{"port": 5432}]}]},
    },
}
#: Free-form Kubernetes objects in values.yaml, documented as a whole in the chart's README.
FREE_FORM_VALUES = {
    "worker.resources",
    "api.resources",
    "migration.resources",
    "podSecurityContext",
    "securityContext",
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``helm template`` of the chart: every rendered object."""
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name="rel", namespace="mail", is_install=True)
    return [
        document
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for document in yaml.safe_load_all(text)
        if document
    ]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(obj["kind"] for obj in objects)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_values_name_every_setting_and_nothing_else() -> None:
    values = load_yaml(CHART / "values.yaml")
    config, secrets = set(values["config"]), set(values["secrets"])
    assert config == setting_names(secret=False), describe_difference(
        config, setting_names(secret=False)
    )
    assert secrets == setting_names(secret=True), describe_difference(
        secrets, setting_names(secret=True)
    )


def test_schema_names_every_setting_and_nothing_else() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    for key, secret in (("config", False), ("secrets", True)):
        names = set(schema["properties"][key]["properties"])
        assert names == setting_names(secret=secret), describe_difference(
            names, setting_names(secret=secret)
        )
        assert schema["properties"][key]["additionalProperties"] is False


def test_chart_defaults_are_the_services_defaults() -> None:
    configmap = find(render(), "ConfigMap", "rel-email-service")
    rendered = Settings.from_env(configmap["data"], default_worker_id="w")
    assert rendered == Settings.from_env({}, default_worker_id="w")


def test_readme_describes_every_value() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([A-Za-z0-9_.]+)`", readme))

    def leaves(node: Any, path: str) -> list[str]:
        if path in FREE_FORM_VALUES or not isinstance(node, dict) or not node:
            return [path]
        return [leaf for key, value in node.items() for leaf in leaves(value, f"{path}.{key}")]

    values = load_yaml(CHART / "values.yaml")
    paths = [leaf for key, value in values.items() for leaf in leaves(value, key)]
    # A setting is documented by its environment name, anything else by its whole path.
    undocumented = [
        path
        for path in paths
        if path not in documented
        and not (path.startswith(("config.", "secrets.")) and path.split(".", 1)[1] in documented)
    ]
    assert not undocumented, f"values missing from {CHART / 'README.md'}: {undocumented}"


@pytest.mark.parametrize("values", [{}, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_helm_lint_finds_nothing(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART, values, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_defaults_render_both_roles_the_migration_and_the_settings() -> None:
    objects = render()
    assert kinds(objects) == [
        "ConfigMap",
        "Deployment",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "Secret",
        "Secret",
        "Service",
        "Service",
    ]
    secret = find(objects, "Secret", "rel-email-service")
    assert set(secret["stringData"]) == setting_names(secret=True)
    configmap = find(objects, "ConfigMap", "rel-email-service")
    assert set(configmap["data"]) == setting_names(secret=False)

    defaults = Settings.from_env({})
    for role, port in (("worker", defaults.process.http_port), ("api", defaults.api.port)):
        deployment = find(objects, "Deployment", f"rel-email-service-{role}")
        spec = container(deployment)
        assert spec["command"] == ["email-service", role]
        assert spec["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert spec["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert spec["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
        assert spec["envFrom"] == [
            {"configMapRef": {"name": "rel-email-service"}},
            {"secretRef": {"name": "rel-email-service"}},
        ]
        assert "env" not in spec
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
    worker_pod = find(objects, "Deployment", "rel-email-service-worker")["spec"]["template"]
    # The worker joins its connections for SHUTDOWN_TIMEOUT_S, then its supervisor for 5 s more.
    assert worker_pod["spec"]["terminationGracePeriodSeconds"] > SHUTDOWN_TIMEOUT_S + 5


def test_migration_is_a_hook_with_its_own_copy_of_the_settings() -> None:
    objects = render()
    job = find(objects, "Job", "rel-email-service-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    spec = job["spec"]["template"]["spec"]["containers"][0]
    assert spec["command"] == ["email-service", "migrate"]
    assert spec["envFrom"] == [{"secretRef": {"name": "rel-email-service-migrate"}}]
    hook_secret = find(objects, "Secret", "rel-email-service-migrate")
    weight = int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert weight < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert set(hook_secret["stringData"]) == setting_names(secret=False) | setting_names(
        secret=True
    )


def test_everything_on_renders_autoscaler_monitor_policies_and_the_existing_secret() -> None:
    objects = render(EVERYTHING_ON)
    for kind in ("HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"):
        assert kind in kinds(objects)
    assert kinds(objects).count("NetworkPolicy") == 2
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"] == [
        "rel-email-service-migrate"
    ]
    for role in ("worker", "api"):
        spec = container(find(objects, "Deployment", f"rel-email-service-{role}"))
        assert {"secretRef": {"name": "email-service-secrets"}} in spec["envFrom"]
    job = find(objects, "Job", "rel-email-service-migrate")
    assert {"secretRef": {"name": "email-service-secrets"}} in container(job)["envFrom"]

    api = find(objects, "Deployment", "rel-email-service-api")
    assert "replicas" not in api["spec"]
    hpa = find(objects, "HorizontalPodAutoscaler", "rel-email-service-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-email-service-api"

    monitor = find(objects, "ServiceMonitor", "rel-email-service")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [o for o in objects if o["kind"] == "Service"]
    assert len(services) == 2
    for service in services:
        assert selector.items() <= service["metadata"]["labels"].items()
        assert service["spec"]["ports"][0]["name"] == monitor["spec"]["endpoints"][0]["port"]


def test_settings_override_one_to_one() -> None:
    values = {"config": {"IMAP_LEASE_TTL_MS": 5000, "EMAIL_SERVICE_HTTP_PORT": 9090}}
    objects = render(values)
    data = find(objects, "ConfigMap", "rel-email-service")["data"]
    assert data["IMAP_LEASE_TTL_MS"] == "5000"
    worker = container(find(objects, "Deployment", "rel-email-service-worker"))
    assert worker["ports"][0]["containerPort"] == 9090


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"IMAP_CONNECTION_TIMEOUT": 5000}}, "IMAP_CONNECTION_TIMEOUT"),
        ({"secrets": {"REDIS_URI": "redis://r"}}, "REDIS_URI"),
        ({"worker": {"terminationGracePeriodSeconds": 20}}, "terminationGracePeriodSeconds"),
    ],
    ids=["misspelt-setting", "misspelt-secret", "grace-period-below-shutdown-bound"],
)
def test_chart_refuses(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)
