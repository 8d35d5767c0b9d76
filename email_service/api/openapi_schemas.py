"""The component schemas of the OpenAPI document: requests and responses (core).

Request fields are ``fields``' declarations, the very ones ``validation`` checks bodies
against. Response schemas forbid properties they do not list and require every property
the handlers always send, so a handler that adds, drops or retypes a field fails the
schemathesis run (``tests/integration/test_api_schema.py``).
"""

from __future__ import annotations

from typing import Any

from email_service.api.fields import CREATE_ONLY_FIELDS, MAX_FOLDERS, PROVIDER_FIELDS
from email_service.api.imap_calls import MAX_LIST_BYTES, MAX_LISTED_FOLDERS
from email_service.api.oauth_connect import INITIATE_FIELDS
from email_service.api.validation import MAX_PAGE_SIZE, MAX_PROVIDER_ID_CHARS, REQUIRED_ON_CREATE
from email_service.api.views import SPECIAL_USE
from email_service.model import Security

#: A create request, shown in the document (and sent by the schemathesis run).
CREATE_EXAMPLE = {
    "name": "Support",
    "mailbox": "support@example.com",
    "host": "imap.example.com",
    "port": 993,
    "security": "tls",
    "username": "support@example.com",
    "password": "app-password",
    "folders": ["INBOX", "Support"],
    "isActive": False,
}

_TEST_STAGES = ("credentials", "resolve", "connect", "tls", "login", "folders", "timeout", "done")


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema["type"]
    return {**schema, "type": [kind, "null"]}


def _object(
    properties: dict[str, Any], *, required: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """A response object: closed, and every property required unless told otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": False,
    }


STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_TIME = {"type": "string", "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}
_UID = {"type": "integer", "minimum": 0}


def _request_fields() -> dict[str, Any]:
    """Writable provider fields, as ``fields`` declares them for ``validation``."""
    return {name: spec.document() for name, spec in PROVIDER_FIELDS.items()}


def _create_only_fields() -> dict[str, Any]:
    """How the provider logs in: set when it is created (``fields.CREATE_ONLY_FIELDS``)."""
    return {name: spec.document() for name, spec in CREATE_ONLY_FIELDS.items()}


def component_schemas() -> dict[str, Any]:
    fields = _request_fields()
    return {
        "ErrorBody": _object(
            {
                "error": {"type": "string", "description": "machine-readable code"},
                "message": {"type": "string"},
                "fields": {"type": "array", "items": ref("FieldError")},
            },
            required=("error", "message"),
        ),
        "FieldError": _object({"field": STRING, "message": STRING}),
        "OAuthInitiate": {
            "type": "object",
            "properties": {
                "providerId": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_PROVIDER_ID_CHARS,
                    "description": INITIATE_FIELDS["providerId"],
                },
                "redirectUri": {"type": "string", "description": INITIATE_FIELDS["redirectUri"]},
            },
            "required": ["providerId"],
            "additionalProperties": False,
        },
        "OAuthStarted": _object(
            {
                "authUrl": {
                    "type": "string",
                    "description": "send the browser here: the provider's consent page",
                },
                "state": {
                    "type": "string",
                    "description": "signed, single-use, valid for 10 minutes",
                },
            }
        ),
        "OAuthConnected": _object(
            {"providerId": STRING, "status": {"type": "string", "enum": ["connected"]}}
        ),
        "ProviderCreate": {
            "type": "object",
            "properties": {**fields, **_create_only_fields()},
            "required": list(REQUIRED_ON_CREATE),
            "additionalProperties": False,
            "examples": [CREATE_EXAMPLE],
        },
        "ProviderUpdate": {
            "type": "object",
            "properties": fields,
            "minProperties": 1,
            "additionalProperties": False,
            "examples": [{"folders": ["INBOX", "Support"], "maxConnections": 3}],
            "description": "Any subset of the fields; a password here replaces the stored one.",
        },
        "Provider": _object(
            {
                "id": STRING,
                "name": STRING,
                "mailbox": STRING,
                "providerType": {"type": "string", "enum": ["imap", "google", "microsoft"]},
                "authType": {"type": "string", "enum": ["password", "oauth2"]},
                "host": STRING,
                "port": {"type": "integer"},
                "security": {"type": "string", "enum": [s.value for s in Security]},
                "username": STRING,
                "folders": _STRINGS,
                "maxConnections": _nullable({"type": "integer"}),
                "isActive": {"type": "boolean"},
                "isPaused": {"type": "boolean"},
                "status": STRING,
                "errorMessage": _nullable(STRING),
                "lastSyncAt": _nullable(_TIME),
                "hasPassword": {"type": "boolean"},
                "hasTlsCaFile": {
                    "type": "boolean",
                    "description": "an operator set a private CA for this provider",
                },
                "createdAt": _TIME,
                "updatedAt": _TIME,
            }
        ),
        "ProviderList": _object(
            {
                "providers": {
                    "type": "array",
                    "maxItems": MAX_PAGE_SIZE,
                    "items": ref("Provider"),
                },
                "nextCursor": {
                    **_nullable(STRING),
                    "description": "pass as `cursor` for the next page; null on the last",
                },
            }
        ),
        "ConnectionTest": _object(
            {
                "ok": {"type": "boolean"},
                "stage": {
                    "type": "string",
                    "enum": list(_TEST_STAGES),
                    "description": "how far the test got (`done` when it went through)",
                },
                "error": _nullable(STRING),
                "capabilities": _STRINGS,
                "foldersFound": _STRINGS,
                "missingFolders": _STRINGS,
                "elapsedMs": _COUNT,
                "foldersTruncated": {
                    "type": "boolean",
                    "description": f"the server lists more than {MAX_LISTED_FOLDERS} folders: "
                    "`foldersFound` holds the first of them (configured folders are still "
                    "checked, one by one)",
                },
            }
        ),
        "Folder": _object(
            {
                "name": STRING,
                "delimiter": _nullable(STRING),
                "parent": _nullable(STRING),
                "flags": _STRINGS,
                "specialUse": _nullable({"type": "string", "enum": list(SPECIAL_USE)}),
                "selectable": {"type": "boolean"},
                "monitored": {"type": "boolean"},
            }
        ),
        "FolderList": _object(
            {
                "providerId": STRING,
                "folders": {"type": "array", "items": ref("Folder")},
                "truncated": {
                    "type": "boolean",
                    "description": f"the server lists more than {MAX_LISTED_FOLDERS} folders "
                    f"(or more than {MAX_LIST_BYTES // (1024 * 1024)} MiB of them): `folders` "
                    "holds the ones read before the listing was cut off",
                },
            }
        ),
        "Cursor": _object({"uidValidity": _UID, "lastUid": _UID, "updatedAt": _nullable(_TIME)}),
        "ServerFolder": _object(
            {"uidValidity": _UID, "uidNext": _nullable(_UID), "messages": _COUNT}
        ),
        "FolderStatus": _object(
            {
                "folder": STRING,
                "mode": {"type": "string", "enum": ["idle", "polling", "stopped"]},
                "cursor": _nullable(ref("Cursor")),
                "events": _nullable(_COUNT),
                "deadLetters": _nullable(_COUNT),
                "lastEventAt": _nullable(_TIME),
                "server": _nullable(ref("ServerFolder")),
                "pendingUids": _nullable(_COUNT),
            }
        ),
        "Lease": _object(
            {
                "holder": _nullable(STRING),
                "expiresAt": _nullable(_TIME),
                "live": {"type": "boolean"},
            }
        ),
        "LiveCheck": _object({"checkedAt": _TIME, "error": _nullable(STRING)}),
        "ProviderStatus": _object(
            {
                "providerId": STRING,
                "state": {"type": "string", "enum": ["active", "paused", "inactive"]},
                "status": STRING,
                "errorMessage": _nullable(STRING),
                "lastError": _nullable(STRING),
                "lastSyncAt": _nullable(_TIME),
                "syncAgeS": _nullable({"type": "number", "minimum": 0}),
                "lease": ref("Lease"),
                "capabilities": _nullable(_STRINGS),
                "countersAvailable": {"type": "boolean"},
                "live": _nullable(ref("LiveCheck")),
                "folders": {"type": "array", "items": ref("FolderStatus")},
            }
        ),
        "ResyncRequest": {
            "type": "object",
            "properties": {
                "folders": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_FOLDERS,
                    "uniqueItems": True,
                    "items": fields["folders"]["items"],
                    "description": "monitored folders to re-baseline; all when left out",
                }
            },
            "additionalProperties": False,
        },
        "ActionResult": _object(
            {
                "providerId": STRING,
                "action": {"type": "string", "enum": ["resync", "reconnect", "pause", "resume"]},
                "folders": _STRINGS,
                "effectiveWithinMs": {
                    "type": "integer",
                    "description": "the worker acts on it within about this long",
                },
            }
        ),
        "Health": _object({"status": STRING}),
        "Readiness": _object(
            {
                "status": STRING,
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        ),
    }
