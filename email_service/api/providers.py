"""Handlers of ``/api/v1/providers`` (shell): validate, confine to the caller's tenant, act.

Every store call takes the caller's tenant, so another tenant's provider id finds nothing
and answers 404, exactly like an id that does not exist. Database calls are synchronous
SQLAlchemy and run on asyncio's default thread pool; IMAP calls on ``ImapCalls``' pool.

Actions on a running provider take effect through the worker's supervisor, which reloads
providers every ``IMAP_PROVIDER_REFRESH_MS``: pause and resume flip ``is_paused``;
reconnect bumps ``updated_at`` (its connections restart); resync deletes folder cursors and
bumps ``updated_at`` (the restarted listeners re-baseline to the newest
``IMAP_MAX_EMAILS_PER_SYNC`` messages; nothing already published is published again,
because the publisher's per-folder published mark skips those UIDs).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from email_service.api.parts import caller_of, parts_of
from email_service.api.problems import ApiProblem, FieldProblem, invalid_fields, provider_not_found
from email_service.api.ratelimit import retry_after_header
from email_service.api.stats import delete_provider_stats, load_provider_stats
from email_service.api.validation import (
    encode_cursor,
    validate_create,
    validate_flag,
    validate_page,
    validate_provider_id,
    validate_resync,
    validate_update,
)
from email_service.api.views import (
    ProbeOutcome,
    folders_view,
    probe_view,
    provider_page,
    provider_view,
    status_view,
)
from email_service.errors import (
    PermanentError,
    ReauthorizationRequired,
    SecretUndecryptable,
    TokenEndpointUnavailable,
)
from email_service.http.server import BODY_READ_TIMEOUT_S
from email_service.imap.session import Login
from email_service.model import KEEP, ProviderConfig
from email_service.settings import MS_PER_S
from email_service.store.provider_admin import ProviderAdmin, ProviderSecrets
from email_service.sync.budget import plan_connections, rank_folders

T = TypeVar("T")

#: JSON media types accepted for request bodies.
JSON_TYPES = ("application/json",)
#: Why a provider cannot be reached without a password.
MISSING_CREDENTIALS_MESSAGE = "no readable password is stored for this provider: set one with PATCH"


def add_routes(app: web.Application, prefix: str) -> None:
    base = f"{prefix}/providers"
    one = base + "/{providerId}"
    app.router.add_get(base, list_providers)
    app.router.add_post(base, create_provider)
    app.router.add_get(one, get_provider)
    app.router.add_patch(one, update_provider)
    app.router.add_delete(one, delete_provider)
    app.router.add_post(one + "/test", check_connection)
    app.router.add_get(one + "/folders", list_folders)
    app.router.add_get(one + "/status", provider_status)
    app.router.add_post(one + "/resync", resync_provider)
    app.router.add_post(one + "/reconnect", reconnect_provider)
    app.router.add_post(one + "/pause", pause_provider)
    app.router.add_post(one + "/resume", resume_provider)


# -- CRUD -----------------------------------------------------------------------------------


async def list_providers(request: web.Request) -> web.Response:
    """One page of the tenant's providers, oldest first; ``nextCursor`` asks for the next."""
    parts, tenant = parts_of(request), caller_of(request).tenant
    page = validate_page(request.query.get("limit"), request.query.get("cursor"))
    records = await asyncio.to_thread(
        parts.providers.list_records, tenant, after=page.after, limit=page.limit + 1
    )
    views, next_key = provider_page(records, page.limit)
    return web.json_response(
        {"providers": views, "nextCursor": None if next_key is None else encode_cursor(next_key)}
    )


async def create_provider(request: web.Request) -> web.Response:
    parts, tenant = parts_of(request), caller_of(request).tenant
    valid = validate_create(await read_json(request))
    await _require_usable_host(request, valid.host, valid.port)
    for name, url in (
        ("oauthTokenUrl", valid.oauth.token_url),
        ("oauthAuthorizeUrl", valid.oauth.authorize_url),
    ):
        if url is not None:
            await _require_usable_url(request, name, url)
    secrets = ProviderSecrets(password=valid.password, client_secret=valid.client_secret)
    provider_id = await asyncio.to_thread(
        _admin(request).create, valid.to_new_provider(tenant), secrets
    )
    record = await asyncio.to_thread(parts.providers.load_record, provider_id, tenant)
    return web.json_response(
        provider_view(record),
        status=201,
        headers={"Location": f"{request.path.rstrip('/')}/{provider_id}"},
    )


async def get_provider(request: web.Request) -> web.Response:
    parts, tenant = parts_of(request), caller_of(request).tenant
    record = await asyncio.to_thread(parts.providers.load_record, _provider_id(request), tenant)
    return web.json_response(provider_view(record))


async def update_provider(request: web.Request) -> web.Response:
    parts, tenant = parts_of(request), caller_of(request).tenant
    provider_id = _provider_id(request)
    patch = validate_update(await read_json(request))
    current = await asyncio.to_thread(parts.providers.load_record, provider_id, tenant)
    changes = patch.changes
    if changes.host is not KEEP:
        port = changes.port if changes.port is not KEEP else current.config.endpoint.port
        await _require_usable_host(request, changes.host, port)

    await asyncio.to_thread(
        _admin(request).change, provider_id, tenant, changes, ProviderSecrets(patch.password)
    )
    record = await asyncio.to_thread(parts.providers.load_record, provider_id, tenant)
    return web.json_response(provider_view(record))


async def delete_provider(request: web.Request) -> web.Response:
    parts, tenant = parts_of(request), caller_of(request).tenant
    provider_id = _provider_id(request)
    await asyncio.to_thread(_admin(request).remove, provider_id, tenant)
    await asyncio.to_thread(delete_provider_stats, parts.redis_client, tenant, provider_id)
    return web.Response(status=204)


# -- calls that reach the mail server --------------------------------------------------------


async def check_connection(request: web.Request) -> web.Response:
    provider = await load_provider(request)
    login = await admit_imap_call(request, provider, "test")
    if login is None:
        outcome = ProbeOutcome(
            ok=False,
            stage="credentials",
            error=MISSING_CREDENTIALS_MESSAGE,
            capabilities=(),
            folders_found=(),
            missing_folders=(),
            elapsed_ms=0,
        )
    else:
        outcome = await _counted(request, "test", parts_of(request).imap.probe(provider, login))
    count_imap_call(request, "test", "ok" if outcome.ok else "failed")
    return web.json_response(probe_view(outcome))


async def list_folders(request: web.Request) -> web.Response:
    provider = await load_provider(request)
    login = await admit_imap_call(request, provider, "folders")
    if login is None:
        raise ApiProblem(
            409,
            "credentials_unavailable",
            MISSING_CREDENTIALS_MESSAGE,
        )
    imap = parts_of(request).imap
    listing = await _counted(request, "folders", imap.list_folders(provider, login))
    count_imap_call(request, "folders", "ok")
    return web.json_response(
        {
            "providerId": provider.id,
            "folders": folders_view(listing.folders, provider.folders),
            "truncated": listing.truncated,
        }
    )


async def _counted(request: web.Request, kind: str, call: Awaitable[T]) -> T:
    """``call``'s result; an ``ApiProblem`` it raises is counted (``rate_limited`` for 429)."""
    try:
        return await call
    except ApiProblem as problem:
        count_imap_call(request, kind, "rate_limited" if problem.status == 429 else "failed")
        raise


async def provider_status(request: web.Request) -> web.Response:
    parts, tenant = parts_of(request), caller_of(request).tenant
    provider_id = _provider_id(request)
    live = validate_flag("live", request.query.get("live"))
    status = await asyncio.to_thread(parts.providers.load_status, provider_id, tenant)
    tenant_providers = await asyncio.to_thread(parts.providers.list_providers, tenant)
    plans = plan_connections(
        [p for p in tenant_providers if p.is_active and not p.is_paused],
        per_account_default=parts.settings.imap.max_connections_per_account,
        per_tenant_cap=parts.settings.imap.max_connections_per_tenant,
    )
    stats = await asyncio.to_thread(load_provider_stats, parts.redis_client, tenant, provider_id)
    live_check = None
    if live:
        provider = status.record.config
        login = await admit_imap_call(request, provider, "status")
        if login is None:
            raise ApiProblem(
                409,
                "credentials_unavailable",
                MISSING_CREDENTIALS_MESSAGE,
            )
        live_check = await _counted(request, "status", parts.imap.check_folders(provider, login))
        count_imap_call(request, "status", "failed" if live_check.error else "ok")
    body = status_view(
        status,
        plan=plans.get(provider_id),
        stats=stats,
        live=live_check,
        now=datetime.now(UTC),
    )
    return web.json_response(body)


# -- actions on the running provider ---------------------------------------------------------


async def resync_provider(request: web.Request) -> web.Response:
    tenant = caller_of(request).tenant
    provider = await load_provider(request)
    configured = rank_folders(provider.folders)
    body = await read_json(request, optional=True)
    folders = validate_resync(body, configured)
    await asyncio.to_thread(_admin(request).resync, provider.id, tenant, folders)
    return _accepted(request, provider.id, "resync", folders or configured)


async def reconnect_provider(request: web.Request) -> web.Response:
    provider = await load_provider(request)
    await read_json(request, optional=True, empty_only=True)
    await asyncio.to_thread(parts_of(request).providers.touch, provider)
    return _accepted(request, provider.id, "reconnect", rank_folders(provider.folders))


async def pause_provider(request: web.Request) -> web.Response:
    return await _set_paused(request, paused=True)


async def resume_provider(request: web.Request) -> web.Response:
    return await _set_paused(request, paused=False)


async def _set_paused(request: web.Request, *, paused: bool) -> web.Response:
    parts, tenant = parts_of(request), caller_of(request).tenant
    provider_id = _provider_id(request)
    await read_json(request, optional=True, empty_only=True)
    await asyncio.to_thread(
        functools.partial(_admin(request).set_paused, provider_id, tenant, paused=paused)
    )
    provider = await asyncio.to_thread(parts.providers.find_provider, provider_id, tenant)
    return _accepted(
        request, provider_id, "pause" if paused else "resume", rank_folders(provider.folders)
    )


def _accepted(
    request: web.Request, provider_id: str, action: str, folders: tuple[str, ...]
) -> web.Response:
    return web.json_response(
        {
            "providerId": provider_id,
            "action": action,
            "folders": list(folders),
            "effectiveWithinMs": round(
                parts_of(request).settings.leases.provider_refresh_s * MS_PER_S
            ),
        },
        status=202,
    )


# -- helpers ---------------------------------------------------------------------------------


def _admin(request: web.Request) -> ProviderAdmin:
    return ProviderAdmin.of(parts_of(request))


def _provider_id(request: web.Request) -> str:
    provider_id = request.match_info["providerId"]
    if not validate_provider_id(provider_id):
        raise provider_not_found()
    return provider_id


async def load_provider(request: web.Request) -> ProviderConfig:
    parts, tenant = parts_of(request), caller_of(request).tenant
    return await asyncio.to_thread(parts.providers.find_provider, _provider_id(request), tenant)


async def admit_imap_call(
    request: web.Request, provider: ProviderConfig, kind: str, *, download: bool = False
) -> Login | None:
    """Take a rate-limit token for an IMAP call, then the login (None: no readable password).

    Downloads (``download``) have a bucket of their own
    (``EMAIL_SERVICE_API_CONTENT_FETCHES_PER_MINUTE``), so fetching a ticket's attachments
    does not use up the tenant's tests and folder listings.
    An OAuth provider's login is its access token, refreshed if due (the same single-flight
    refresh as the worker's); a provider that needs re-authorisation answers 409.
    """
    parts, tenant = parts_of(request), caller_of(request).tenant
    limiter = parts.download_limiter if download else parts.limiter
    wait_s = limiter.try_acquire(tenant, time.monotonic())
    if wait_s is not None:
        count_imap_call(request, kind, "rate_limited")
        per_minute = (
            parts.settings.api.content_fetches_per_minute
            if download
            else parts.settings.api.imap_calls_per_minute
        )
        what = "downloads" if download else "calls that open mail server connections"
        raise ApiProblem(
            429,
            "rate_limited",
            f"too many {what}; at most {per_minute} per minute",
            headers={"Retry-After": retry_after_header(wait_s)},
        )
    try:
        return await asyncio.to_thread(parts.logins.login_for, provider)
    except SecretUndecryptable:
        return None
    except ReauthorizationRequired as exc:
        raise ApiProblem(409, "reauth_required", f"{exc}: connect it again") from None
    except TokenEndpointUnavailable as exc:
        raise ApiProblem(502, "token_endpoint_unavailable", str(exc)) from None
    except PermanentError as exc:
        raise ApiProblem(409, "credentials_unavailable", str(exc)) from None


async def _require_usable_host(request: web.Request, host: str, port: int) -> None:
    refusal = await parts_of(request).imap.refusal_for_host(host, port)
    if refusal is not None:
        raise invalid_fields([FieldProblem("host", refusal)])


async def _require_usable_url(request: web.Request, name: str, url: str) -> None:
    """An OAuth endpoint the service will call: https, and public unless private is allowed.

    The token endpoint receives our requests, so it gets the same server-side request
    forgery check as an IMAP host; plain http only where private hosts are allowed
    (a test or on-premises authorization server).
    """
    parts = urlsplit(url)
    allow_private = parts_of(request).settings.imap.allow_private_hosts
    if parts.scheme != "https" and not allow_private:
        raise invalid_fields([FieldProblem(name, "expected an https URL")])
    host = parts.hostname or ""
    refusal = await parts_of(request).imap.refusal_for_host(host, parts.port or 443)
    if refusal is not None:
        raise invalid_fields([FieldProblem(name, refusal)])


def count_imap_call(request: web.Request, kind: str, outcome: str) -> None:
    parts_of(request).metrics.add("email_service_api_imap_calls_total", kind=kind, outcome=outcome)


async def read_json(
    request: web.Request, *, optional: bool = False, empty_only: bool = False
) -> Any:
    """The JSON body (None when ``optional`` and there is none); 400/413/415 otherwise.

    ``empty_only``: the call takes no body, but an empty JSON object is tolerated.
    """
    if not request.body_exists:
        if optional:
            return None
        raise ApiProblem(400, "invalid_body", "a JSON body is required")
    content_type = request.content_type
    if content_type not in JSON_TYPES:
        raise ApiProblem(
            415, "unsupported_media_type", "send the body as Content-Type: application/json"
        )
    try:
        raw = await asyncio.wait_for(request.read(), BODY_READ_TIMEOUT_S)
    except TimeoutError:
        raise ApiProblem(
            408,
            "request_timeout",
            f"the request body did not arrive within {BODY_READ_TIMEOUT_S:g} s",
            headers={"Connection": "close"},
        ) from None
    if not raw and optional:
        return None
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise ApiProblem(400, "invalid_json", "the body is not valid JSON") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise ApiProblem(400, "invalid_json", "the body is nested too deeply") from None
    if body is None:
        raise ApiProblem(400, "invalid_body", "the request body must be a JSON object")
    if empty_only and body != {}:
        raise invalid_fields([FieldProblem("body", "this call takes no fields")])
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
