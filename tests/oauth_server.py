"""A real OAuth2 authorization server for the tests (aiohttp, in a thread of the test process).

It speaks the parts of RFC 6749, 7636 (PKCE, S256 only) and 7662 (introspection) that the
service and Dovecot use:

- ``GET /authorize``: checks client, redirect URI and code challenge, consents at once for
  ``consenting_user``, and redirects back with ``code`` and ``state``.
- ``POST /token``: ``authorization_code`` (checks the code, redirect URI, PKCE verifier and
  client secret) and ``refresh_token`` (rotates: every refresh issues a new refresh token
  and the old one stops working). Access tokens live ``access_ttl_s``.
- ``POST /introspect``: what Dovecot's ``oauth2`` passdb asks at every XOAUTH2/OAUTHBEARER
  login: ``{"active": true, "username": ...}`` for a live token.

Knobs for faults: ``fail_token_status`` (answer /token with that HTTP status and an HTML
page), ``token_latency_s`` (answer that much later, normally), ``token_stall_s`` (answer
that late with 504, touching no token, as a stalled gateway would), ``revoke_all()``; and
for hostile endpoints, ``token_reply`` (answer /token with this status, content type and
body) and ``token_redirect`` (answer /token with a 307 to ``/internal``, which stands for a
service inside the operator's network and records what reaches it). Everything it saw is
counted, and the client id and secret of every /token request kept (``token_clients``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web


@dataclass
class IssuedGrant:
    username: str
    client_id: str
    scope: str


@dataclass
class Introspection:
    token: str
    active: bool
    expired: bool


@dataclass
class ServerLog:
    refresh_calls: int = 0
    code_exchanges: int = 0
    introspections: list[Introspection] = field(default_factory=list)
    issued_refresh_tokens: list[str] = field(default_factory=list)
    #: (client_id, client_secret) of every /token request, as sent.
    token_clients: list[tuple[str, str]] = field(default_factory=list)
    #: Every request that reached ``/internal`` (its form).
    internal_requests: list[dict[str, str]] = field(default_factory=list)


class OAuthTestServer:
    """Start with ``start()``; ``base_url`` is where it listens; ``stop()`` at the end."""

    def __init__(
        self,
        *,
        client_id: str = "test-client",
        client_secret: str = "test-client-secret-0123456789",  # noqa: S107
        consenting_user: str = "user",
        access_ttl_s: float = 3600,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.consenting_user = consenting_user
        self.access_ttl_s = access_ttl_s
        self.fail_token_status: int | None = None
        self.token_latency_s = 0.0
        self.token_stall_s = 0.0
        self.token_reply: tuple[int, str, str] | None = None
        self.token_redirect = False
        self.log = ServerLog()
        self._lock = threading.Lock()
        self._codes: dict[str, dict[str, str]] = {}
        self._access: dict[str, tuple[IssuedGrant, float]] = {}
        self._refresh: dict[str, IssuedGrant] = {}
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/authorize"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def introspection_url(self) -> str:
        return self.base_url + "/introspect"

    def start(self) -> OAuthTestServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_post("/introspect", self._introspect)
        app.router.add_post("/internal", self._internal)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # -- helpers for tests ----------------------------------------------------------------

    def issue_grant(self, username: str | None = None) -> tuple[str, str]:
        """A fresh (access token, refresh token) pair, as if the user had consented."""
        with self._lock:
            grant = IssuedGrant(username or self.consenting_user, self.client_id, "mail")
            return self._issue(grant)

    def revoke_all(self) -> None:
        """The user withdrew consent: every token stops working."""
        with self._lock:
            self._access.clear()
            self._refresh.clear()

    def live_refresh_tokens(self) -> list[str]:
        with self._lock:
            return list(self._refresh)

    def expired_logins(self) -> list[Introspection]:
        """Logins that Dovecot checked with an expired token."""
        with self._lock:
            return [i for i in self.log.introspections if i.expired]

    def _issue(self, grant: IssuedGrant) -> tuple[str, str]:
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        self._access[access] = (grant, time.time() + self.access_ttl_s)
        self._refresh[refresh] = grant
        self.log.issued_refresh_tokens.append(refresh)
        return access, refresh

    # -- endpoints ------------------------------------------------------------------------

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return web.Response(status=400, text="unknown client or response type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return web.Response(status=400, text="PKCE with S256 is required")
        redirect_uri = q.get("redirect_uri", "")
        code = "code-" + secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = {
                "redirect_uri": redirect_uri,
                "challenge": q["code_challenge"],
                "scope": q.get("scope", ""),
            }
        query = urlencode({"code": code, "state": q.get("state", "")})
        raise web.HTTPFound(f"{redirect_uri}?{query}")

    def _client_of(self, form: Any, request: web.Request) -> tuple[str, str]:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return str(client_id or ""), str(secret or "")

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client = self._client_of(form, request)
        with self._lock:
            self.log.token_clients.append(client)
        if self.token_redirect:
            raise web.HTTPTemporaryRedirect(f"{self.base_url}/internal")
        if self.token_reply is not None:
            status, content_type, body = self.token_reply
            return web.Response(status=status, text=body, content_type=content_type)
        await asyncio.sleep(self.token_latency_s)
        stall = self.token_stall_s
        if stall:  # a stalled endpoint: the client gives up first; nothing is processed
            await asyncio.sleep(stall)
            with self._lock:
                self.log.refresh_calls += form.get("grant_type") == "refresh_token"
            return web.Response(status=504, text="stalled")
        if self.fail_token_status is not None:
            with self._lock:
                if form.get("grant_type") == "refresh_token":
                    self.log.refresh_calls += 1
            return web.Response(
                status=self.fail_token_status,
                text="<html>unavailable</html>",
                content_type="text/html",
            )
        if client != (self.client_id, self.client_secret):
            return _oauth_error("invalid_client", status=401)
        with self._lock:
            if form.get("grant_type") == "authorization_code":
                self.log.code_exchanges += 1
                return self._exchange(form)
            if form.get("grant_type") == "refresh_token":
                self.log.refresh_calls += 1
                grant = self._refresh.pop(str(form.get("refresh_token", "")), None)
                if grant is None:
                    return _oauth_error("invalid_grant")
                return self._token_response(grant)
        return _oauth_error("unsupported_grant_type")

    def _exchange(self, form: Any) -> web.Response:
        entry = self._codes.pop(str(form.get("code", "")), None)
        if entry is None or entry["redirect_uri"] != form.get("redirect_uri"):
            return _oauth_error("invalid_grant")
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != entry["challenge"]:
            return _oauth_error("invalid_grant", "PKCE verifier does not match")
        return self._token_response(
            IssuedGrant(self.consenting_user, self.client_id, entry["scope"])
        )

    def _token_response(self, grant: IssuedGrant) -> web.Response:
        access, refresh = self._issue(grant)
        return web.json_response(
            {
                "access_token": access,
                "refresh_token": refresh,
                "token_type": "Bearer",
                "expires_in": int(self.access_ttl_s),
                "scope": grant.scope,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def _internal(self, request: web.Request) -> web.Response:
        form = await request.post()
        with self._lock:
            self.log.internal_requests.append({k: str(v) for k, v in form.items()})
        return web.json_response({"error": "internal-service-reply", "secret": "INTERNAL-DATA"})

    async def _introspect(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", ""))
        now = time.time()
        with self._lock:
            found = self._access.get(token)
            expired = found is not None and found[1] <= now
            active = found is not None and not expired
            self.log.introspections.append(Introspection(token, active, expired))
        if not active or found is None:
            return web.json_response({"active": False})
        grant, expires = found
        return web.json_response(
            {"active": True, "username": grant.username, "exp": int(expires), "scope": grant.scope}
        )


def _oauth_error(code: str, description: str = "", *, status: int = 400) -> web.Response:
    body = {"error": code} | ({"error_description": description} if description else {})
    return web.json_response(body, status=status)
