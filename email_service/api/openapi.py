"""The OpenAPI 3.1 document of the API, built from the code's own constants (core).

Field limits, patterns and enums come from ``validation`` and ``views``' vocabularies, so
changing a rule changes the document. Response schemas forbid properties they do not
list and require every property the handlers always send, so a handler that adds,
drops or retypes a field fails the schemathesis run (``tests/integration/test_api_schema.py``)
and ``tests/unit/test_api_openapi.py`` checks that every route is documented and every
documented operation is routed.
"""

from __future__ import annotations

from typing import Any

from email_service.api.imap_calls import MAX_LIST_BYTES, MAX_LISTED_FOLDERS
from email_service.api.oauth_connect import (
    CALLBACK_PATH,
    CALLBACK_QUERY,
    INITIATE_FIELDS,
    INITIATE_PATH,
)
from email_service.api.validation import (
    ACCEPTED,
    CREATE_ONLY,
    DEFAULT_PAGE_SIZE,
    FOLDER_PATTERN,
    HOST_PATTERN,
    MAILBOX_PATTERN,
    MAX_CONNECTIONS,
    MAX_CURSOR_CHARS,
    MAX_FOLDER_CHARS,
    MAX_FOLDERS,
    MAX_HOST_CHARS,
    MAX_MAILBOX_CHARS,
    MAX_NAME_CHARS,
    MAX_PAGE_SIZE,
    MAX_PASSWORD_CHARS,
    MAX_PROVIDER_ID_CHARS,
    MAX_SCOPES,
    MAX_URL_CHARS,
    MAX_USERNAME_CHARS,
    PASSWORD_PATTERN,
    REQUIRED_ON_CREATE,
    SCOPE_PATTERN,
    TEXT_PATTERN,
)
from email_service.api.views import MAX_PAGE_BYTES, SPECIAL_USE
from email_service.model import AUTH_OAUTH2, AUTH_PASSWORD, Security
from providers.presets import PROVIDER_TYPES

#: Prefix of every authenticated route; the version changes only with incompatible changes.
API_PREFIX = "/api/v1"
#: Where the OpenAPI document is served (no token needed: it holds nothing secret).
OPENAPI_PATH = "/api/openapi.json"
#: Version of the API described (not of the package).
API_VERSION = "1.0.0"

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

_DESCRIPTION = """\
Manage the IMAP mailboxes (providers) of one tenant: create, change, test, remove, browse
folders, watch per-folder progress, and resync, reconnect, pause or resume a provider.

**Authentication.** Every `/api/v1` call needs `Authorization: Bearer <token>`: a JWT signed
with the configured HS256 secret or RS256 key, with `exp`, and the tenant in the configured
claim (`tenant` by default); or an operator's service token, with the tenant in the
`X-Tenant-Id` header. A missing or bad token is answered with 401.

**Tenancy.** Every call sees only the caller's tenant. Another tenant's provider id answers
404, exactly like an id that does not exist.

**Errors.** Every error body is an `ErrorBody`; a 422 names each rejected field and what it
accepts. Passwords are write-only: no response ever contains one.
"""


def _ref(name: str) -> dict[str, str]:
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


_STRING = {"type": "string"}
#: A password or client secret: write-only, never returned.
_SECRET = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_PASSWORD_CHARS,
    "pattern": PASSWORD_PATTERN,
    "writeOnly": True,
    "description": "Write-only: stored encrypted, never returned.",
}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_TIME = {"type": "string", "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}
_UID = {"type": "integer", "minimum": 0}


def _request_fields() -> dict[str, Any]:
    """Writable provider fields, with the limits ``validation`` enforces."""
    return {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_NAME_CHARS,
            "pattern": TEXT_PATTERN,
            "description": ACCEPTED["name"],
        },
        "mailbox": {
            "type": "string",
            "minLength": 3,
            "maxLength": MAX_MAILBOX_CHARS,
            "pattern": MAILBOX_PATTERN,
            "description": ACCEPTED["mailbox"],
        },
        "host": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_HOST_CHARS,
            "pattern": HOST_PATTERN,
            "description": ACCEPTED["host"] + ". It must resolve to public addresses only, "
            "unless the operator allows private ones.",
        },
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "security": {"type": "string", "enum": [s.value for s in Security]},
        "username": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_USERNAME_CHARS,
            "pattern": TEXT_PATTERN,
        },
        "password": _SECRET,
        "folders": {
            "type": "array",
            "maxItems": MAX_FOLDERS,
            "uniqueItems": True,
            "items": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_FOLDER_CHARS,
                "pattern": FOLDER_PATTERN,
            },
            "description": ACCEPTED["folders"],
        },
        "maxConnections": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_CONNECTIONS,
            "description": ACCEPTED["maxConnections"],
        },
        "isActive": {"type": "boolean"},
    }


def _create_only_fields() -> dict[str, Any]:
    """How the provider logs in: set when it is created (``validation.CREATE_ONLY``)."""
    url = {"type": "string", "minLength": 1, "maxLength": MAX_URL_CHARS}
    return {
        "providerType": {
            "type": "string",
            "enum": list(PROVIDER_TYPES),
            "description": CREATE_ONLY["providerType"],
        },
        "authType": {
            "type": "string",
            "enum": [AUTH_PASSWORD, AUTH_OAUTH2],
            "description": CREATE_ONLY["authType"] + "; with oauth2, connect it through "
            "POST /api/email/oauth/imap/initiate",
        },
        "oauthClientId": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_URL_CHARS,
            "pattern": TEXT_PATTERN,
            "description": CREATE_ONLY["oauthClientId"],
        },
        "oauthClientSecret": _SECRET,
        "oauthAuthorizeUrl": {**url, "description": CREATE_ONLY["oauthAuthorizeUrl"]},
        "oauthTokenUrl": {**url, "description": CREATE_ONLY["oauthTokenUrl"]},
        "oauthScopes": {
            "type": "array",
            "maxItems": MAX_SCOPES,
            "items": {"type": "string", "pattern": SCOPE_PATTERN},
            "description": CREATE_ONLY["oauthScopes"],
        },
    }


def _schemas() -> dict[str, Any]:
    fields = _request_fields()
    return {
        "ErrorBody": _object(
            {
                "error": {"type": "string", "description": "machine-readable code"},
                "message": {"type": "string"},
                "fields": {"type": "array", "items": _ref("FieldError")},
            },
            required=("error", "message"),
        ),
        "FieldError": _object({"field": _STRING, "message": _STRING}),
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
            {"providerId": _STRING, "status": {"type": "string", "enum": ["connected"]}}
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
                "id": _STRING,
                "name": _STRING,
                "mailbox": _STRING,
                "providerType": {"type": "string", "enum": ["imap", "google", "microsoft"]},
                "authType": {"type": "string", "enum": ["password", "oauth2"]},
                "host": _STRING,
                "port": {"type": "integer"},
                "security": {"type": "string", "enum": [s.value for s in Security]},
                "username": _STRING,
                "folders": _STRINGS,
                "maxConnections": _nullable({"type": "integer"}),
                "isActive": {"type": "boolean"},
                "isPaused": {"type": "boolean"},
                "status": _STRING,
                "errorMessage": _nullable(_STRING),
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
                    "items": _ref("Provider"),
                },
                "nextCursor": {
                    **_nullable(_STRING),
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
                "error": _nullable(_STRING),
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
                "name": _STRING,
                "delimiter": _nullable(_STRING),
                "parent": _nullable(_STRING),
                "flags": _STRINGS,
                "specialUse": _nullable({"type": "string", "enum": list(SPECIAL_USE)}),
                "selectable": {"type": "boolean"},
                "monitored": {"type": "boolean"},
            }
        ),
        "FolderList": _object(
            {
                "providerId": _STRING,
                "folders": {"type": "array", "items": _ref("Folder")},
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
                "folder": _STRING,
                "mode": {"type": "string", "enum": ["idle", "polling", "stopped"]},
                "cursor": _nullable(_ref("Cursor")),
                "events": _nullable(_COUNT),
                "deadLetters": _nullable(_COUNT),
                "lastEventAt": _nullable(_TIME),
                "server": _nullable(_ref("ServerFolder")),
                "pendingUids": _nullable(_COUNT),
            }
        ),
        "Lease": _object(
            {
                "holder": _nullable(_STRING),
                "expiresAt": _nullable(_TIME),
                "live": {"type": "boolean"},
            }
        ),
        "LiveCheck": _object({"checkedAt": _TIME, "error": _nullable(_STRING)}),
        "ProviderStatus": _object(
            {
                "providerId": _STRING,
                "state": {"type": "string", "enum": ["active", "paused", "inactive"]},
                "status": _STRING,
                "errorMessage": _nullable(_STRING),
                "lastError": _nullable(_STRING),
                "lastSyncAt": _nullable(_TIME),
                "syncAgeS": _nullable({"type": "number", "minimum": 0}),
                "lease": _ref("Lease"),
                "capabilities": _nullable(_STRINGS),
                "countersAvailable": {"type": "boolean"},
                "live": _nullable(_ref("LiveCheck")),
                "folders": {"type": "array", "items": _ref("FolderStatus")},
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
                "providerId": _STRING,
                "action": {"type": "string", "enum": ["resync", "reconnect", "pause", "resume"]},
                "folders": _STRINGS,
                "effectiveWithinMs": {
                    "type": "integer",
                    "description": "the worker acts on it within about this long",
                },
            }
        ),
        "Health": _object({"status": _STRING}),
        "Readiness": _object(
            {
                "status": _STRING,
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        ),
    }


def _json(
    schema_name: str, description: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema_name)}},
    }
    if headers:
        response["headers"] = headers
    return response


_ERRORS = {
    400: "malformed request (body not JSON, or not an object); for the OAuth callback: a "
    "state that is malformed, forged, expired or used already, or a refused code",
    403: "the OAuth state belongs to another tenant",
    401: "missing or bad bearer token",
    404: "no such provider for this tenant (also another tenant's provider)",
    408: "the request body did not arrive within 10 s",
    409: "the provider cannot do this (no readable password; an OAuth provider not connected "
    "yet or needing re-authorisation; or not an OAuth provider); on create: the tenant has "
    "EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT providers already (`provider_limit_reached`)",
    413: "request body too large",
    415: "body is not application/json",
    422: "a field is invalid; `fields` names each one and says what is accepted",
    429: "too many calls that open mail server connections (per minute, or running at once); "
    "retry after `Retry-After` seconds",
    502: "the mail server (or the OAuth token endpoint) failed",
    503: "the database is unavailable, or the OAuth flow is not configured; retry after "
    "`Retry-After` seconds",
    504: "the mail server did not answer in time",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "required": True}}


def _errors(*statuses: int) -> dict[str, Any]:
    """Error responses of an operation; 401, 503 and 422 (an unknown query parameter) always."""
    responses = {}
    for status in (401, 422, 503, *statuses):
        headers = _RETRY_AFTER if status in (429, 503) else None
        responses[str(status)] = _json("ErrorBody", _ERRORS[status], headers)
    return responses


_PROVIDER_ID = {
    "name": "providerId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_PROVIDER_ID_CHARS},
}
_BODY_ERRORS = (400, 408, 413, 415, 422)
_PAGE_PARAMETERS = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "default": DEFAULT_PAGE_SIZE,
        },
        "description": "providers per page",
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CURSOR_CHARS},
        "description": "the `nextCursor` of the previous page, unchanged",
    },
]


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    body_required: bool = True,
    parameters: list[dict[str, Any]] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["providers"],
        "responses": responses,
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _action(
    name: str, summary: str, description: str, *, body: str | None = None
) -> dict[str, Any]:
    return _operation(
        f"{name}Provider",
        summary,
        {
            "202": _json("ActionResult", "accepted; the worker acts on it shortly"),
            **_errors(404, *_BODY_ERRORS),
        },
        body=body,
        body_required=False,
        parameters=[_PROVIDER_ID],
        description=description,
    )


#: Operations that take a provider id, reachable from a created or changed provider (OpenAPI
#: links: clients and the schemathesis state machine follow them with the real id).
_PROVIDER_OPERATIONS = (
    "getProvider",
    "updateProvider",
    "deleteProvider",
    "testProvider",
    "listFolders",
    "getProviderStatus",
    "resyncProvider",
    "reconnectProvider",
    "pauseProvider",
    "resumeProvider",
)


def _provider_links(id_pointer: str) -> dict[str, Any]:
    return {
        operation[0].upper() + operation[1:]: {
            "operationId": operation,
            "parameters": {"providerId": f"$response.body#{id_pointer}"},
        }
        for operation in _PROVIDER_OPERATIONS
    }


def _with_links(response: dict[str, Any], links: dict[str, Any]) -> dict[str, Any]:
    return {**response, "links": links}


#: ``message_parts.PART_ID`` as a JSON Schema pattern.
_PART_ID_PATTERN = r"^[1-9][0-9]{0,5}(\.[1-9][0-9]{0,5}){0,31}$"
_DOWNLOAD_HEADERS = {
    "Content-Disposition": {
        "schema": {"type": "string"},
        "required": True,
        "description": "always `attachment`, with the file name",
    },
}


def _download_paths(one: str) -> dict[str, Any]:
    """The content downloads (``api.content``): a message's bytes, or one decoded part."""
    message = one + "/messages/{folder}/{uidValidity}/{uid}"
    number = {"type": "integer", "minimum": 1, "maximum": 2**32 - 1}
    parameters = [
        _PROVIDER_ID,
        {
            "name": "folder",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
            "description": "a folder the provider follows (an event's `imap.folder`), "
            "percent-encoded as one path segment",
        },
        {"name": "uidValidity", "in": "path", "required": True, "schema": number},
        {"name": "uid", "in": "path", "required": True, "schema": number},
    ]
    gone = (
        "no such provider for this tenant, or the folder (`folder_not_configured`, "
        "`folder_not_found`), UIDVALIDITY (`uidvalidity_changed`), message "
        "(`message_not_found`) or part (`part_not_found`) is not there any more"
    )
    errors = {**_errors(409, 429, 502, 504), "404": _json("ErrorBody", gone)}

    def download(media: str, what: str) -> dict[str, Any]:
        return {
            "description": what,
            "headers": _DOWNLOAD_HEADERS,
            "content": {media: {"schema": {"type": "string", "format": "binary"}}},
        }

    raw = download("message/rfc822", "the message as the mail server stores it")
    part = download("*/*", "the part, its transfer encoding undone, with its own type")
    return {
        message + "/raw": {
            "get": _operation(
                "getMessageRaw",
                "A message's original bytes, streamed from the mailbox (never marks it seen)",
                {"200": raw, **errors},
                parameters=parameters,
            )
        },
        message + "/parts/{partId}": {
            "get": _operation(
                "getMessagePart",
                "One part of a message (an attachment), decoded, streamed from the mailbox",
                {"200": part, **errors},
                parameters=[
                    *parameters,
                    {
                        "name": "partId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": _PART_ID_PATTERN},
                        "description": "an IMAP part number: an event's `attachments[].id` or "
                        "`ingressSkipReasons[].attachmentId`",
                    },
                ],
            )
        },
    }


def _paths() -> dict[str, Any]:
    base = f"{API_PREFIX}/providers"
    one = base + "/{providerId}"
    location = {"Location": {"schema": {"type": "string"}, "required": True}}
    next_page = {
        "NextPage": {
            "operationId": "listProviders",
            "parameters": {"cursor": "$response.body#/nextCursor"},
        }
    }
    return {
        base: {
            "get": _operation(
                "listProviders",
                "The tenant's providers, oldest first, a page at a time",
                {
                    "200": _with_links(_json("ProviderList", "one page of providers"), next_page),
                    **_errors(),
                },
                parameters=_PAGE_PARAMETERS,
                description=f"At most `limit` providers (default {DEFAULT_PAGE_SIZE}, at most "
                f"{MAX_PAGE_SIZE}) and about {MAX_PAGE_BYTES // (1024 * 1024)} MiB a page (a "
                "page always holds one); while `nextCursor` is not null, ask again with "
                "`cursor` set to it. Pages follow creation order, so providers created "
                "meanwhile appear at the end and none is skipped or repeated.",
            ),
            "post": _operation(
                "createProvider",
                "Create a provider (and store its password or OAuth client secret)",
                {
                    "201": _with_links(
                        _json("Provider", "created", location), _provider_links("/id")
                    ),
                    **_errors(409, *_BODY_ERRORS),
                },
                body="ProviderCreate",
                description="The host is resolved, and refused when it resolves to a private, "
                "loopback or link-local address (unless the operator allows those). Create it "
                "with `isActive: false` to test it and pick folders before the worker starts. "
                "`providerType` google or microsoft fills in host, port, security and the "
                "OAuth endpoints; `authType: oauth2` needs no password: connect the mailbox "
                "through POST /api/email/oauth/imap/initiate.",
            ),
        },
        one: {
            "parameters": [_PROVIDER_ID],
            "get": _operation(
                "getProvider",
                "One provider",
                {"200": _json("Provider", "the provider"), **_errors(404)},
            ),
            "patch": _operation(
                "updateProvider",
                "Change some fields; the worker reconnects with the new configuration",
                {
                    "200": _with_links(
                        _json("Provider", "the changed provider"), _provider_links("/id")
                    ),
                    **_errors(404, *_BODY_ERRORS),
                },
                body="ProviderUpdate",
            ),
            "delete": _operation(
                "deleteProvider",
                "Remove the provider, its folder state, its counters and its secrets",
                {"204": {"description": "removed"}, **_errors(404)},
            ),
        },
        one + "/test": {
            "post": _operation(
                "testProvider",
                "Connect, log in, read capabilities and folders (rate limited, time bound)",
                {
                    "200": _json("ConnectionTest", "the test ran; `ok` says whether it passed"),
                    **_errors(404, 409, 429, 502),
                },
                parameters=[_PROVIDER_ID],
            )
        },
        one + "/folders": {
            "get": _operation(
                "listFolders",
                "The mailbox's folder tree, to choose folders from (rate limited, time bound)",
                {
                    "200": _json(
                        "FolderList",
                        f"the folders the server lists (at most {MAX_LISTED_FOLDERS}: see "
                        "`truncated`)",
                    ),
                    **_errors(404, 409, 422, 429, 502, 504),
                },
                parameters=[_PROVIDER_ID],
            )
        },
        **_download_paths(one),
        one + "/status": {
            "get": _operation(
                "getProviderStatus",
                "Per-folder progress: cursor, mode, counters, lease, errors",
                {
                    "200": _json("ProviderStatus", "the status"),
                    **_errors(404, 409, 422, 429, 502),
                },
                parameters=[
                    _PROVIDER_ID,
                    {
                        "name": "live",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                        "description": "also ask the server for each folder's STATUS "
                        "(opens a connection: rate limited)",
                    },
                ],
            )
        },
        one + "/resync": {
            "post": _action(
                "resync",
                "Re-baseline folders to their newest messages",
                "Forgets the folders' cursors; the worker's listeners restart and start again "
                "from the newest IMAP_MAX_EMAILS_PER_SYNC messages. Nothing already published "
                "is published again.",
                body="ResyncRequest",
            )
        },
        one + "/reconnect": {
            "post": _action(
                "reconnect",
                "Drop and reopen the provider's connections",
                "Marks the provider changed; the worker restarts its connections.",
            )
        },
        one + "/pause": {
            "post": _action(
                "pause",
                "Stop following the provider",
                "The worker closes its connections and "
                "releases its lease; the configuration and cursors stay.",
            )
        },
        one + "/resume": {
            "post": _action(
                "resume",
                "Follow a paused provider again",
                "The worker takes it up again from its cursors.",
            )
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "The process is running",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": _json("Health", "running")},
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "The database and Redis answer",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": _json("Readiness", "ready"),
                    "503": _json("Readiness", "not ready"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        INITIATE_PATH: {
            "post": {
                **_operation(
                    "initiateOAuth",
                    "Start connecting a provider with OAuth2: the consent URL and its state",
                    {
                        "200": _json("OAuthStarted", "send the browser to authUrl"),
                        **_errors(404, 409, *_BODY_ERRORS),
                    },
                    body="OAuthInitiate",
                    description="PKCE (S256) always; the state is bound to the tenant, the "
                    "provider and the redirect URI, which must be on the operator's allow-list.",
                ),
                "tags": ["oauth"],
            }
        },
        CALLBACK_PATH: {
            "get": {
                "operationId": "oauthCallback",
                "summary": "Stores the grant: the UI forwards the provider's redirect here",
                "description": "Called with the token of the user who started the flow "
                "(its tenant and subject), so a consent link sent to someone else cannot "
                "complete it; see docs/oauth.md.",
                "tags": ["oauth"],
                "security": [{"bearerAuth": []}],
                "parameters": [
                    {"name": name, "in": "query", "required": name == "state", "schema": _STRING}
                    for name in sorted(CALLBACK_QUERY)
                ],
                "responses": {
                    "200": _json("OAuthConnected", "connected (no UI URL is configured)"),
                    "302": {
                        "description": "connected: back to the UI with providerId and status",
                        "headers": {"Location": {"schema": _STRING, "required": True}},
                    },
                    **{
                        str(status): _json("ErrorBody", _ERRORS[status])
                        for status in (400, 401, 403, 404, 409, 422, 502)
                    },
                    "503": _json("ErrorBody", _ERRORS[503], _RETRY_AFTER),
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def build_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "email-service provider API",
            "version": API_VERSION,
            "description": _DESCRIPTION,
        },
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "providers", "description": "IMAP mailboxes of the caller's tenant"},
            {"name": "oauth", "description": "connecting a mailbox with OAuth2"},
            {"name": "operations", "description": "probes for operators (no token)"},
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A tenant JWT, or an operator's service token together with "
                    "the X-Tenant-Id header.",
                }
            },
            "schemas": _schemas(),
        },
    }
