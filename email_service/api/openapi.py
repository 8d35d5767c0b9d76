"""The OpenAPI 3.1 document of the API: its paths and operations (core).

The schemas are ``openapi_schemas``' (request fields as ``fields`` declares them for
``validation``, so changing a rule changes the document); limits and enums come from the
code's own constants. ``tests/unit/test_api_openapi.py`` checks that every route is
documented and every documented operation is routed.
"""

from __future__ import annotations

from typing import Any

from email_service.api.imap_calls import MAX_LISTED_FOLDERS
from email_service.api.oauth_connect import (
    CALLBACK_PATH,
    CALLBACK_QUERY,
    INITIATE_PATH,
)
from email_service.api.openapi_operations import (
    BODY_ERRORS,
    ERRORS,
    PAGE_PARAMETERS,
    PROVIDER_ID,
    RETRY_AFTER,
    action,
    download_paths,
    error_responses,
    json_response,
    operation,
    provider_links,
    with_links,
)
from email_service.api.openapi_schemas import STRING, component_schemas
from email_service.api.validation import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
)
from email_service.api.views import MAX_PAGE_BYTES

#: Prefix of every authenticated route; the version changes only with incompatible changes.
API_PREFIX = "/api/v1"
#: Where the OpenAPI document is served (no token needed: it holds nothing secret).
OPENAPI_PATH = "/api/openapi.json"
#: Version of the API described (not of the package).
API_VERSION = "1.0.0"

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
            "get": operation(
                "listProviders",
                "The tenant's providers, oldest first, a page at a time",
                {
                    "200": with_links(
                        json_response("ProviderList", "one page of providers"), next_page
                    ),
                    **error_responses(),
                },
                parameters=PAGE_PARAMETERS,
                description=f"At most `limit` providers (default {DEFAULT_PAGE_SIZE}, at most "
                f"{MAX_PAGE_SIZE}) and about {MAX_PAGE_BYTES // (1024 * 1024)} MiB a page (a "
                "page always holds one); while `nextCursor` is not null, ask again with "
                "`cursor` set to it. Pages follow creation order, so providers created "
                "meanwhile appear at the end and none is skipped or repeated.",
            ),
            "post": operation(
                "createProvider",
                "Create a provider (and store its password or OAuth client secret)",
                {
                    "201": with_links(
                        json_response("Provider", "created", location), provider_links("/id")
                    ),
                    **error_responses(409, *BODY_ERRORS),
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
            "parameters": [PROVIDER_ID],
            "get": operation(
                "getProvider",
                "One provider",
                {"200": json_response("Provider", "the provider"), **error_responses(404)},
            ),
            "patch": operation(
                "updateProvider",
                "Change some fields; the worker reconnects with the new configuration",
                {
                    "200": with_links(
                        json_response("Provider", "the changed provider"), provider_links("/id")
                    ),
                    **error_responses(404, *BODY_ERRORS),
                },
                body="ProviderUpdate",
            ),
            "delete": operation(
                "deleteProvider",
                "Remove the provider, its folder state, its counters and its secrets",
                {"204": {"description": "removed"}, **error_responses(404)},
            ),
        },
        one + "/test": {
            "post": operation(
                "testProvider",
                "Connect, log in, read capabilities and folders (rate limited, time bound)",
                {
                    "200": json_response(
                        "ConnectionTest", "the test ran; `ok` says whether it passed"
                    ),
                    **error_responses(404, 409, 429, 502),
                },
                parameters=[PROVIDER_ID],
            )
        },
        one + "/folders": {
            "get": operation(
                "listFolders",
                "The mailbox's folder tree, to choose folders from (rate limited, time bound)",
                {
                    "200": json_response(
                        "FolderList",
                        f"the folders the server lists (at most {MAX_LISTED_FOLDERS}: see "
                        "`truncated`)",
                    ),
                    **error_responses(404, 409, 422, 429, 502, 504),
                },
                parameters=[PROVIDER_ID],
            )
        },
        **download_paths(one),
        one + "/status": {
            "get": operation(
                "getProviderStatus",
                "Per-folder progress: cursor, mode, counters, lease, errors",
                {
                    "200": json_response("ProviderStatus", "the status"),
                    **error_responses(404, 409, 422, 429, 502),
                },
                parameters=[
                    PROVIDER_ID,
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
            "post": action(
                "resync",
                "Re-baseline folders to their newest messages",
                "Forgets the folders' cursors; the worker's listeners restart and start again "
                "from the newest IMAP_MAX_EMAILS_PER_SYNC messages. Nothing already published "
                "is published again.",
                body="ResyncRequest",
            )
        },
        one + "/reconnect": {
            "post": action(
                "reconnect",
                "Drop and reopen the provider's connections",
                "Marks the provider changed; the worker restarts its connections.",
            )
        },
        one + "/pause": {
            "post": action(
                "pause",
                "Stop following the provider",
                "The worker closes its connections and "
                "releases its lease; the configuration and cursors stay.",
            )
        },
        one + "/resume": {
            "post": action(
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
                "responses": {"200": json_response("Health", "running")},
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "The database and Redis answer",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": json_response("Readiness", "ready"),
                    "503": json_response("Readiness", "not ready"),
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
                **operation(
                    "initiateOAuth",
                    "Start connecting a provider with OAuth2: the consent URL and its state",
                    {
                        "200": json_response("OAuthStarted", "send the browser to authUrl"),
                        **error_responses(404, 409, *BODY_ERRORS),
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
                    {"name": name, "in": "query", "required": name == "state", "schema": STRING}
                    for name in sorted(CALLBACK_QUERY)
                ],
                "responses": {
                    "200": json_response("OAuthConnected", "connected (no UI URL is configured)"),
                    "302": {
                        "description": "connected: back to the UI with providerId and status",
                        "headers": {"Location": {"schema": STRING, "required": True}},
                    },
                    **{
                        str(status): json_response("ErrorBody", ERRORS[status])
                        for status in (400, 401, 403, 404, 409, 422, 502)
                    },
                    "503": json_response("ErrorBody", ERRORS[503], RETRY_AFTER),
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
            "schemas": component_schemas(),
        },
    }
