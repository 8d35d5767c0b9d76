"""The OAuth connect flow of ``email-service api`` (shell): initiate and callback.

``POST /api/email/oauth/imap/initiate`` (tenant token required) takes ``{providerId,
redirectUri?}``, keeps a new PKCE verifier in Redis (encrypted, 10 minutes) under a
nonce, and answers ``{authUrl, state}``: the provider's consent page with S256 PKCE and
a state signed over nonce, tenant, provider and redirect URI (``oauth.state``).

``GET /api/email/oauth/imap/callback?code&state`` is forwarded by the UI with the token
of the user who started the flow: the flow is bound to that party (the token's tenant and
subject, kept in the flow), so a consent link sent to someone else cannot attach their
mailbox to the sender's provider (docs/oauth.md says why a token and not a cookie). It
verifies the state, reads the flow (one no key opens is refused, not used up), checks the
caller, takes the flow (GETDEL: a state works once), exchanges the code with the verifier
(the token URL checked again at this use, ``oauth.client``), stores the tokens
(``store.oauth_grants.save_connected_grant``: the provider is connected, un-parked and its
connections restart), and sends the browser to ``EMAIL_SERVICE_OAUTH_UI_URL`` with
``providerId`` and ``status=connected`` (or answers JSON when no UI URL is set). Every
refusal is a 4xx with a code saying why; no code, token or state is ever logged.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from email_service.api.auth import Caller
from email_service.api.oauth_flows import OAuthFlowStore, PendingFlow
from email_service.api.parts import ApiParts, caller_of, parts_of
from email_service.api.problems import ApiProblem, FieldProblem, invalid_fields, provider_not_found
from email_service.api.providers import read_json
from email_service.api.validation import require_object, validate_provider_id
from email_service.credentials.oauth_clients import client_config
from email_service.errors import (
    HostRefused,
    OAuthRequestRejected,
    OAuthStateInvalid,
    PermanentError,
    ProviderNotFound,
    ReauthorizationRequired,
    SecretUndecryptable,
    TokenEndpointUnavailable,
)
from email_service.model import AUTH_OAUTH2, ProviderConfig
from email_service.oauth.client import OAuthClientConfig, authorization_url, exchange_code
from email_service.oauth.state import (
    STATE_TTL_S,
    StateClaims,
    new_code_verifier,
    new_nonce,
    sign_state,
    verify_state,
)
from email_service.oauth.timing import expires_at
from email_service.store.oauth_grants import OAuthGrantStore, StoredTokens

INITIATE_PATH = "/api/email/oauth/imap/initiate"
CALLBACK_PATH = "/api/email/oauth/imap/callback"
#: Routes outside ``/api/v1`` that still need a bearer token: the callback's binds the flow
#: to whoever started it.
AUTHENTICATED_PATHS = frozenset({INITIATE_PATH, CALLBACK_PATH})
#: Query parameters the callback accepts (RFC 6749 4.1.2 and 4.1.2.1).
CALLBACK_QUERY = frozenset({"code", "state", "error", "error_description", "error_uri", "scope"})
INITIATE_FIELDS = {
    "providerId": "the id of one of your providers that uses OAuth2",
    "redirectUri": "one of the redirect URIs the operator allowed "
    "(EMAIL_SERVICE_OAUTH_REDIRECT_URIS); omit for the first",
}
MAX_CODE_CHARS = 2048


def add_routes(app: web.Application) -> None:
    app.router.add_post(INITIATE_PATH, initiate)
    app.router.add_get(CALLBACK_PATH, callback)


def _state_secret(parts: ApiParts) -> str:
    settings = parts.settings
    if settings.oauth.state_secret is None or not settings.oauth.redirect_uris:
        raise ApiProblem(
            503,
            "oauth_not_configured",
            "the OAuth connect flow is not configured: the operator sets "
            "EMAIL_SERVICE_OAUTH_STATE_SECRET and EMAIL_SERVICE_OAUTH_REDIRECT_URIS",
            headers={"Retry-After": "3600"},
        )
    return settings.oauth.state_secret


def _validate_initiate(body: Any, allowed: tuple[str, ...]) -> tuple[str, str]:
    values = require_object(body)
    problems = [
        FieldProblem(name[:64], "unknown field (accepted: providerId, redirectUri)")
        for name in values
        if name not in INITIATE_FIELDS
    ]
    provider_id = values.get("providerId")
    if not isinstance(provider_id, str) or not validate_provider_id(provider_id):
        problems.append(FieldProblem("providerId", f"required: {INITIATE_FIELDS['providerId']}"))
    redirect_uri = values.get("redirectUri", allowed[0])
    if not isinstance(redirect_uri, str) or redirect_uri not in allowed:
        problems.append(
            FieldProblem("redirectUri", f"not allowed: {INITIATE_FIELDS['redirectUri']}")
        )
    if problems:
        raise invalid_fields(problems)
    return str(provider_id), str(redirect_uri)


async def _oauth_provider(parts: ApiParts, tenant: str, provider_id: str) -> ProviderConfig:
    try:
        provider = await asyncio.to_thread(parts.providers.find_provider, provider_id, tenant)
    except ProviderNotFound:
        raise provider_not_found() from None
    if provider.auth_type != AUTH_OAUTH2:
        raise ApiProblem(409, "not_oauth", "this provider logs in with a password, not OAuth2")
    return provider


async def _client_config(parts: ApiParts, provider: ProviderConfig) -> OAuthClientConfig:
    def load() -> OAuthClientConfig:
        secret = parts.secrets.load_optional(provider.tenant, provider.client_secret_name())
        return client_config(
            provider,
            parts.settings.oauth,
            secret,
            allow_private_hosts=parts.settings.imap.allow_private_hosts,
        )

    try:
        return await asyncio.to_thread(load)
    except PermanentError as exc:
        raise ApiProblem(409, "oauth_client_missing", str(exc)) from None


def _flows(parts: ApiParts) -> OAuthFlowStore:
    return OAuthFlowStore(parts.redis_client, parts.box)


async def initiate(request: web.Request) -> web.Response:
    parts, caller = parts_of(request), caller_of(request)
    tenant = caller.tenant
    key = _state_secret(parts)
    provider_id, redirect_uri = _validate_initiate(
        await read_json(request), parts.settings.oauth.redirect_uris
    )
    provider = await _oauth_provider(parts, tenant, provider_id)
    config = await _client_config(parts, provider)
    nonce, verifier = new_nonce(), new_code_verifier()
    flow = PendingFlow(tenant, provider_id, redirect_uri, verifier, caller.subject)
    await asyncio.to_thread(_flows(parts).save, nonce, flow, STATE_TTL_S)
    claims = StateClaims(nonce, tenant, provider_id, redirect_uri, int(time.time()) + STATE_TTL_S)
    state = sign_state(claims, key)
    url = authorization_url(config, redirect_uri=redirect_uri, state=state, code_verifier=verifier)
    return web.json_response({"authUrl": url, "state": state})


def _bad_state(reason: str, message: str, status: int = 400) -> ApiProblem:
    return ApiProblem(status, f"invalid_state_{reason}", message)


def _used() -> ApiProblem:
    return _bad_state("used", "this connect flow was already completed or is unknown: start again")


async def _take_flow(parts: ApiParts, claims: StateClaims, caller: Caller) -> PendingFlow:
    """The flow of ``claims``, taken for good once it is readable and the caller's own."""
    if caller.tenant != claims.tenant:
        raise _bad_state("tenant", "this connect flow was started by another tenant", 403)
    flows = _flows(parts)
    try:
        flow = await asyncio.to_thread(flows.read, claims.nonce)
    except SecretUndecryptable:
        raise ApiProblem(
            409,
            "flow_unreadable",
            "this connect flow was sealed with a key that is no longer in "
            "EMAIL_SERVICE_SECRET_KEYS: start the connect flow again (or an operator adds "
            "the key back)",
        ) from None
    if flow is None:
        raise _used()
    if (flow.tenant, flow.provider_id, flow.redirect_uri) != (
        claims.tenant,
        claims.provider_id,
        claims.redirect_uri,
    ):
        raise _bad_state("mismatch", "the state does not belong to this connect flow")
    if flow.subject != caller.subject:
        raise _bad_state(
            "caller",
            "this connect flow was started by someone else: the user who started it must "
            "finish it (the UI forwards the callback with that user's token)",
            403,
        )
    try:
        taken = await asyncio.to_thread(flows.take, claims.nonce)
    except SecretUndecryptable:  # re-sealed meanwhile under a key this process lacks
        taken = None
    if taken is None:
        raise _used()
    return taken


async def callback(request: web.Request) -> web.StreamResponse:
    parts = parts_of(request)
    key = _state_secret(parts)
    query = request.query
    unknown = sorted(set(query) - CALLBACK_QUERY)
    if unknown:
        raise invalid_fields([FieldProblem(n[:64], "unknown query parameter") for n in unknown])
    state = query.get("state")
    if not state:
        raise invalid_fields([FieldProblem("state", "required: the state from initiate")])
    try:
        claims = verify_state(state, key, now_s=time.time())
    except OAuthStateInvalid as exc:
        raise _bad_state(exc.reason, str(exc)) from None
    flow = await _take_flow(parts, claims, caller_of(request))
    if "error" in query:
        return _finish(parts, claims.provider_id, {"error": "consent_refused"}, status=400)
    code = query.get("code", "")
    if not code or len(code) > MAX_CODE_CHARS:
        raise invalid_fields([FieldProblem("code", "required: the authorization code")])
    provider = await _oauth_provider(parts, flow.tenant, flow.provider_id)
    config = await _client_config(parts, provider)
    started = datetime.now(UTC)
    try:
        issued = await asyncio.to_thread(
            exchange_code,
            config,
            code=code,
            redirect_uri=flow.redirect_uri,
            code_verifier=flow.code_verifier,
            timeout_s=parts.settings.oauth.timeout_s,
        )
    except (ReauthorizationRequired, OAuthRequestRejected) as exc:
        raise ApiProblem(400, "code_rejected", f"the provider refused the code: {exc}") from None
    except HostRefused as exc:
        raise ApiProblem(
            409, "token_endpoint_refused", f"{exc}; change the provider's token URL"
        ) from None
    except TokenEndpointUnavailable as exc:
        raise ApiProblem(502, "token_endpoint_unavailable", str(exc)) from None
    if issued.refresh_token is None:
        raise ApiProblem(
            400,
            "no_refresh_token",
            "the provider issued no refresh token (offline access was not granted): "
            "connect again and accept offline access",
        )
    tokens = StoredTokens(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_at=expires_at(started, issued.expires_in_s),
        refreshed_at=started,
    )
    grants = OAuthGrantStore(parts.engine, parts.secrets)
    await asyncio.to_thread(grants.save_connected_grant, flow.tenant, flow.provider_id, tokens)
    return _finish(parts, flow.provider_id, {"status": "connected"})


def _finish(
    parts: ApiParts, provider_id: str, outcome: dict[str, str], *, status: int = 200
) -> web.StreamResponse:
    """Send the browser back to the UI, or answer JSON when no UI URL is configured."""
    ui_url = parts.settings.oauth.ui_url
    if ui_url is None:
        if status >= 400:
            raise ApiProblem(status, outcome["error"], "the user did not grant access")
        return web.json_response({"providerId": provider_id, **outcome}, status=status)
    scheme, netloc, path, query, _fragment = urlsplit(ui_url)
    extra = urlencode({"providerId": provider_id, **outcome})
    location = urlunsplit((scheme, netloc, path, f"{query}&{extra}" if query else extra, ""))
    return web.Response(status=302, headers={"Location": location})
