"""Building blocks of the OpenAPI document's operations: responses, errors, parameters,
links, and the download operations (core)."""

from __future__ import annotations

from typing import Any

from email_service.api.openapi_schemas import ref
from email_service.api.validation import (
    DEFAULT_PAGE_SIZE,
    MAX_CURSOR_CHARS,
    MAX_PAGE_SIZE,
    MAX_PROVIDER_ID_CHARS,
)


def json_response(
    schema_name: str, description: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ref(schema_name)}},
    }
    if headers:
        response["headers"] = headers
    return response


ERRORS = {
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
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "required": True}}


def error_responses(*statuses: int) -> dict[str, Any]:
    """Error responses of an operation; 401, 503 and 422 (an unknown query parameter) always."""
    responses = {}
    for status in (401, 422, 503, *statuses):
        headers = RETRY_AFTER if status in (429, 503) else None
        responses[str(status)] = json_response("ErrorBody", ERRORS[status], headers)
    return responses


PROVIDER_ID = {
    "name": "providerId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_PROVIDER_ID_CHARS},
}
BODY_ERRORS = (400, 408, 413, 415, 422)
PAGE_PARAMETERS = [
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


def operation(
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
            "content": {"application/json": {"schema": ref(body)}},
        }
    return operation


def action(name: str, summary: str, description: str, *, body: str | None = None) -> dict[str, Any]:
    return operation(
        f"{name}Provider",
        summary,
        {
            "202": json_response("ActionResult", "accepted; the worker acts on it shortly"),
            **error_responses(404, *BODY_ERRORS),
        },
        body=body,
        body_required=False,
        parameters=[PROVIDER_ID],
        description=description,
    )


#: Operations that take a provider id, reachable from a created or changed provider (OpenAPI
#: links: clients and the schemathesis state machine follow them with the real id).
PROVIDER_OPERATIONS = (
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


def provider_links(id_pointer: str) -> dict[str, Any]:
    return {
        operation[0].upper() + operation[1:]: {
            "operationId": operation,
            "parameters": {"providerId": f"$response.body#{id_pointer}"},
        }
        for operation in PROVIDER_OPERATIONS
    }


def with_links(response: dict[str, Any], links: dict[str, Any]) -> dict[str, Any]:
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


def download_paths(one: str) -> dict[str, Any]:
    """The content downloads (``api.content``): a message's bytes, or one decoded part."""
    message = one + "/messages/{folder}/{uidValidity}/{uid}"
    number = {"type": "integer", "minimum": 1, "maximum": 2**32 - 1}
    parameters = [
        PROVIDER_ID,
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
    errors = {**error_responses(409, 429, 502, 504), "404": json_response("ErrorBody", gone)}

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
            "get": operation(
                "getMessageRaw",
                "A message's original bytes, streamed from the mailbox (never marks it seen)",
                {"200": raw, **errors},
                parameters=parameters,
            )
        },
        message + "/parts/{partId}": {
            "get": operation(
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
