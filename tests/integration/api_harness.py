"""The API served on a loopback port from a thread of its own, for integration tests.

``ApiHarness`` builds the real ``ApiParts`` from settings (real PostgreSQL, Redis, and the
system resolver unless a test passes a resolver table) and serves the real aiohttp app, so
requests go through the middlewares exactly as in production. ``call`` keeps every
response body in ``bodies``, for the test that searches them for secrets.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from email_service.api.app import build_app
from email_service.api.auth import sign_token
from email_service.api.imap_calls import Resolver, resolve_addresses
from email_service.api.parts import ApiParts
from email_service.devserver.dovecot import DovecotServer
from email_service.http.server import HttpLimits, listening_socket, serve_app
from email_service.settings import Settings
from tests.conftest import MailUser

#: A secret for HS256 test tokens (settings ask for 32 characters or more).
JWT_SECRET = "test-secret-for-api-tokens-0123456789"


def api_environ(environ: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The test environment plus the API's settings; private hosts allowed (Dovecot is local)."""
    return {
        **environ,
        "EMAIL_SERVICE_API_JWT_SECRET": JWT_SECRET,
        "IMAP_ALLOW_PRIVATE_HOSTS": "true",
        "EMAIL_SERVICE_API_CORS_ORIGINS": "https://ui.example.com",
        **extra,
    }


def static_resolver(table: Mapping[str, list[str]]) -> Resolver:
    """Resolves the names in ``table`` from it (like /etc/hosts), the rest by the system."""

    async def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return list(table[host])
        return await resolve_addresses(host, port)

    return resolve


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:500]!r})"


@dataclass
class ApiHarness:
    settings: Settings
    resolver: Resolver = resolve_addresses
    parts: ApiParts = field(init=False)
    port: int = field(init=False, default=0)
    bodies: list[bytes] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.parts = ApiParts.build(self.settings, resolver=self.resolver)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="api-harness", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError("the API did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        sock = listening_socket("127.0.0.1", 0)
        runner = await serve_app(
            build_app(self.parts),
            sock,
            limits=HttpLimits.of(self.settings.process),
            metrics=self.parts.metrics,
        )
        self.port = sock.getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, tenant: str) -> str:
        return sign_token(self.settings, tenant, subject="test")

    def call(
        self,
        method: str,
        path: str,
        *,
        tenant: str | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One request; ``tenant`` adds a valid token for it."""
        sent = dict(headers or {})
        if tenant is not None:
            sent["Authorization"] = f"Bearer {self.token(tenant)}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            reply = Reply(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()
        self.bodies.append(reply.body)
        return reply

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        self._loop.close()
        self.parts.close()


@contextmanager
def api_with(environ: Mapping[str, str], **extra: str) -> Iterator[ApiHarness]:
    """An API served with the test settings and ``extra`` ones, for one test."""
    harness = ApiHarness(Settings.from_env(api_environ(environ, **extra)))
    try:
        yield harness
    finally:
        harness.close()


def provider_body(dovecot: DovecotServer, user: MailUser, **overrides: Any) -> dict[str, Any]:
    """A create request for ``user``'s mailbox on the plain port (loopback, no TLS needed)."""
    return {
        "name": "Support",
        "mailbox": f"{user.name}@localhost",
        "host": "127.0.0.1",
        "port": dovecot.imap_port,
        "security": "none",
        "username": user.name,
        "password": user.password,
        **overrides,
    }
