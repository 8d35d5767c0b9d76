"""The HTTP server of both roles, with timeouts and connection limits (shell; aiohttp's server).

aiohttp serves the application but bounds neither how long a client may take to send its
request head nor how many connections one client may hold: 20,000 half-sent requests used
to exhaust the file descriptors (``/health`` stopped answering, and the accept loop logged
a traceback for each refused ``accept()``). Every server of the service is started here,
with ``serve_app``, so both ``email-service api`` and the worker's ``/health`` server get:

- **connection limits**: at most ``EMAIL_SERVICE_HTTP_MAX_CONNECTIONS`` open connections
  (never more than the file-descriptor limit allows, less a reserve for the database,
  Redis and IMAP) and ``EMAIL_SERVICE_HTTP_MAX_CONNECTIONS_PER_IP`` per client address; a
  connection beyond either is closed at once, before anything is read, and counted in
  ``email_service_http_connections_refused_total{reason}``;
- **a header timeout** (``HEADER_TIMEOUT_S``): a request head (request line and headers)
  must be complete that long after the connection opened, or after the first byte that
  follows the previous response; otherwise the connection is closed. A silent new
  connection counts from its start. (aiohttp has none of its own: its keep-alive timer
  only closes connections that stay idle, by default for an hour.)
- **idle keep-alive** of ``KEEPALIVE_TIMEOUT_S``, above the idle timeout of common load
  balancers (60 s) so they, not we, close idle connections;
- **request heads that do not parse** (a header over 8 KiB, a bad request line) answer a
  JSON error body like every other error (431 for a head too large, else 400), close the
  connection, and are logged at debug level without a traceback and without the bytes
  sent: a header may carry a token. Counted in ``email_service_http_bad_requests_total``.

Request bodies are bounded by the handlers that read them (the API: size and
``BODY_READ_TIMEOUT_S``); a body nobody reads is drained for at most ``LINGERING_TIME_S``
after the response, then the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from email_service.metrics import Metrics
from email_service.settings import ProcessSettings

logger = logging.getLogger(__name__)

#: Seconds a client has to send a complete request head; real clients need milliseconds.
HEADER_TIMEOUT_S = 10.0
#: Seconds the API waits for a whole request body (at most EMAIL_SERVICE_API_MAX_BODY_BYTES,
#: 64 KiB by default: a minimum rate of about 6.5 KB/s), then answers 408.
BODY_READ_TIMEOUT_S = 10.0
#: Seconds an idle keep-alive connection stays open: above the 60 s idle timeout of common
#: load balancers, so the balancer closes first and never sends into a closing connection.
KEEPALIVE_TIMEOUT_S = 75.0
#: Seconds an unread request body is drained after the response before the connection closes.
LINGERING_TIME_S = 2.0
#: File descriptors kept free of HTTP connections: database and Redis pools, IMAP calls,
#: log files and the parse processes' pipes.
FD_RESERVE = 256


@dataclass(frozen=True)
class HttpLimits:
    """Connection limits of one server (0 for ``max_per_ip``: no per-address limit)."""

    max_connections: int
    max_per_ip: int
    header_timeout_s: float = HEADER_TIMEOUT_S

    @classmethod
    def of(cls, process: ProcessSettings) -> HttpLimits:
        return cls(process.http_max_connections, process.http_max_connections_per_ip)


def fd_bounded(max_connections: int) -> int:
    """``max_connections``, lowered so the process keeps ``FD_RESERVE`` descriptors free."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    bounded = max(min(max_connections, soft - FD_RESERVE), 1)
    if bounded < max_connections:
        logger.warning(
            "EMAIL_SERVICE_HTTP_MAX_CONNECTIONS=%d is above what the open-file limit (%d) "
            "allows; serving at most %d connections (raise `ulimit -n`)",
            max_connections,
            soft,
            bounded,
        )
    return bounded


class ConnectionGuard:
    """Counts open connections, in total and per client address (event loop only)."""

    def __init__(self, limits: HttpLimits, metrics: Metrics) -> None:
        self.limits = limits
        self.max_connections = fd_bounded(limits.max_connections)
        self.metrics = metrics
        self._open = 0
        self._by_ip: dict[str, int] = {}

    @property
    def open_connections(self) -> int:
        return self._open

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False (not counted) when over a limit."""
        if self._open >= self.max_connections:
            self._refuse("total")
            return False
        held = self._by_ip.get(ip, 0)
        if self.limits.max_per_ip and held >= self.limits.max_per_ip:
            self._refuse("per_ip")
            return False
        self._open += 1
        self._by_ip[ip] = held + 1
        return True

    def release(self, ip: str) -> None:
        self._open -= 1
        held = self._by_ip.get(ip, 1) - 1
        if held > 0:
            self._by_ip[ip] = held
        else:
            self._by_ip.pop(ip, None)

    def _refuse(self, reason: str) -> None:
        self.metrics.add("email_service_http_connections_refused_total", reason=reason)


def _peer_ip(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unknown"


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, with the limits and the header timeout above.

    Knows one aiohttp internal: ``_request_count`` grows when a request head has been
    parsed (the load test in ``tests/e2e/test_http_limits.py`` fails if that changes).
    """

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._peer = "unknown"
        self._admitted = False
        self._head_timer: asyncio.TimerHandle | None = None
        #: Responses finished; when it equals the request heads parsed, no request is
        #: pending and the next bytes begin a new request head.
        self._responses = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._peer = _peer_ip(transport)
        if not self._guard.admit(self._peer):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._admitted = True
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._guard.release(self._peer)
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        if data and self._head_timer is None and self._between_requests():
            self._arm_head_timer()
        super().data_received(data)
        if self._request_count != parsed:
            self._disarm_head_timer()

    async def finish_response(self, request: Any, resp: Any, start_time: Any) -> Any:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._responses += 1

    def _between_requests(self) -> bool:
        """No request parsed and still unanswered (pipelined ones included)."""
        return self._responses >= self._request_count

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A JSON answer for a request aiohttp could not parse (or a handler crash)."""
        if status >= 500:  # a bug of ours, not a client's doing: keep the traceback
            logger.error("request failed outside the application", exc_info=exc)
            code, text = "internal", "internal error"
        elif isinstance(exc, LineTooLong):
            status, code = 431, "request_header_too_large"
            text = "the request line or a header is too long (at most 8190 bytes each)"
        else:
            code, text = "bad_request", "the request could not be parsed as HTTP/1.1"
        self._guard.metrics.add("email_service_http_bad_requests_total", status=str(status))
        logger.debug("bad request from %s: %s", self._peer, type(exc).__name__)
        response = web.Response(
            status=status,
            text=json.dumps({"error": code, "message": text}),
            content_type="application/json",
        )
        response.force_close()
        return response

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self._loop.call_later(
            self._guard.limits.header_timeout_s, self._head_timed_out
        )

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._between_requests():
            self._guard.metrics.add("email_service_http_header_timeouts_total")
            self.force_close()


class GuardedSite(web.BaseSite):
    """A listening socket whose connections get ``GuardedRequestHandler``."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, guard: ConnectionGuard):
        super().__init__(runner)
        self._sock = sock
        self._guard = guard
        host, port = sock.getsockname()[:2]
        self._name = f"http://{host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def make_handler() -> GuardedRequestHandler:
            return GuardedRequestHandler(
                server,
                self._guard,
                loop=loop,
                access_log=None,
                keepalive_timeout=KEEPALIVE_TIMEOUT_S,
                lingering_time=LINGERING_TIME_S,
            )

        self._server = await loop.create_server(make_handler, sock=self._sock)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (IPv4, or IPv6 for a host with a colon), reusable after a restart."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def serve_app(
    app: web.Application,
    sock: socket.socket,
    *,
    limits: HttpLimits,
    metrics: Metrics,
    shutdown_timeout_s: float = 10.0,
) -> web.AppRunner:
    """Serve ``app`` on ``sock`` with ``limits``; the caller awaits ``runner.cleanup()``."""
    guard = ConnectionGuard(limits, metrics)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    await GuardedSite(runner, sock, guard).start()
    return runner
