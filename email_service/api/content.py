"""Handlers of the content downloads (shell): a message's original bytes, or one part.

``GET /api/v1/providers/{providerId}/messages/{folder}/{uidValidity}/{uid}/raw`` and
``.../parts/{partId}``: the paths an event's ``contentLocation`` gives (the folder
percent-encoded as one path segment). Confined to the caller's tenant like every provider
call (another tenant's provider answers 404); the folder must be one the provider
follows. A parked provider (its OAuth grant revoked: ``reauth_required``) answers 409.
Everything else (admission, connection budget, streaming) is ``content_streams``'.

Once the first bytes are sent the status cannot change: when the server fails midway, or
the client reads slower than a chunk per ``EMAIL_SERVICE_API_IMAP_TIMEOUT_MS``, the
connection is cut, so a client never takes a cut-off download for a whole one (a chunked
answer without its last chunk).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from email_service.api.content_streams import MessageRef, not_found
from email_service.api.message_parts import is_part_id
from email_service.api.parts import parts_of
from email_service.api.problems import ApiProblem, FieldProblem, invalid_fields
from email_service.api.providers import (
    MISSING_CREDENTIALS_MESSAGE,
    admit_imap_call,
    count_imap_call,
    load_provider,
)
from email_service.errors import EmailServiceError
from email_service.model import REAUTH_REQUIRED, ProviderConfig

logger = logging.getLogger(__name__)

#: The largest UID and UIDVALIDITY (RFC 3501: 32-bit unsigned, non-zero).
MAX_UID = 2**32 - 1
#: The route of one message, under the API prefix.
MESSAGE_ROUTE = "/providers/{providerId}/messages/{folder}/{uidValidity}/{uid}"


def add_routes(app: web.Application, prefix: str) -> None:
    message = prefix + MESSAGE_ROUTE
    app.router.add_get(message + "/raw", message_raw)
    app.router.add_get(message + "/parts/{partId}", message_part)


async def message_raw(request: web.Request) -> web.StreamResponse:
    return await _serve(request, None)


async def message_part(request: web.Request) -> web.StreamResponse:
    return await _serve(request, request.match_info["partId"])


async def _serve(request: web.Request, part_id: str | None) -> web.StreamResponse:
    parts = parts_of(request)
    provider = await load_provider(request)
    ref = _message_ref(request, provider, part_id)
    if provider.status == REAUTH_REQUIRED:
        raise ApiProblem(
            409,
            "reauth_required",
            "the provider's OAuth grant was revoked; connect it again to download its mail",
        )
    login = await admit_imap_call(request, provider, "download", download=True)
    if login is None:
        raise ApiProblem(409, "credentials_unavailable", MISSING_CREDENTIALS_MESSAGE)
    try:
        stream = await parts.content.open(provider, login, ref, part_id)
    except ApiProblem as problem:
        count_imap_call(request, "download", "rate_limited" if problem.status == 429 else "failed")
        raise
    response = web.StreamResponse(headers=stream.headers)
    outcome = "ok"
    try:
        await response.prepare(request)
        async for chunk in stream.chunks():
            await asyncio.wait_for(response.write(chunk), parts.imap.timeout_s)
        await response.write_eof()
    except (EmailServiceError, TimeoutError, ConnectionError) as exc:
        outcome = "failed"
        logger.warning(
            "download of uid %d part %s cut after %d bytes: %s",
            ref.uid,
            part_id or "(raw)",
            stream.sent_bytes,
            type(exc).__name__ if isinstance(exc, TimeoutError | ConnectionError) else exc,
        )
        if request.transport is not None:
            request.transport.abort()
    finally:
        await stream.close()
    count_imap_call(request, "download", outcome)
    return response


def _message_ref(request: web.Request, provider: ProviderConfig, part_id: str | None) -> MessageRef:
    """The message the path names; 422 naming the field that is malformed, 404 when the
    folder is not one the provider follows."""
    info = request.match_info
    problems = []
    numbers = {}
    for name in ("uidValidity", "uid"):
        value = info[name]
        number = int(value) if value.isascii() and value.isdigit() and len(value) <= 10 else 0
        if not 1 <= number <= MAX_UID:
            problems.append(FieldProblem(name, f"must be a whole number from 1 to {MAX_UID}"))
        numbers[name] = number
    if part_id is not None and not is_part_id(part_id):
        problems.append(
            FieldProblem(
                "partId",
                "must be an IMAP part number such as 2 or 1.3 (an event's attachments[].id)",
            )
        )
    if problems:
        raise invalid_fields(problems)
    folder = info["folder"]
    if folder not in provider.folders:
        raise not_found("folder_not_configured", "the provider does not follow this folder")
    return MessageRef(folder, numbers["uidValidity"], numbers["uid"])
