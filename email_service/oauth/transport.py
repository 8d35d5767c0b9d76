"""How token requests reach the token endpoint (shell; the only module that imports urllib3).

A token request carries the client secret, the authorization code and the PKCE verifier,
to a URL a tenant may have chosen. So ``checked_session`` gives ``requests`` sessions that:

- connect only through ``security.outbound.HostGuard``: the name is resolved once, every address
  checked against the server-side request forgery guard, and the socket opened to a
  checked address (TLS still verified against the host name, by urllib3);
- never follow a redirect: a 3xx answer raises ``OAuthRequestRejected`` before anything is
  sent again, so a 307 cannot forward the form to an internal service;
- ignore the environment (``HTTPS_PROXY``, ``.netrc``, ``REQUESTS_CA_BUNDLE``): a proxy
  would make the guard judge the proxy instead of the endpoint, and ``.netrc`` could add
  credentials meant for someone else.
"""

from __future__ import annotations

import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from email_service.errors import OAuthRequestRejected
from email_service.security.outbound import HostGuard


def _open(connection: HTTPConnection, guard: HostGuard) -> socket.socket:
    """urllib3's ``_new_conn``, through the guard; socket errors as urllib3 reports them."""
    timeout = connection.timeout if isinstance(connection.timeout, int | float) else None
    try:
        return guard.connect(
            connection.host, connection.port, timeout, connection.socket_options or ()
        )
    except TimeoutError as exc:
        raise ConnectTimeoutError(connection, "connection timed out") from exc
    except OSError as exc:
        raise NewConnectionError(connection, f"connection failed: {exc}") from exc


class _CheckedHTTPConnection(HTTPConnection):
    def __init__(self, *args: Any, guard: HostGuard, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        return _open(self, self._guard)


class _CheckedHTTPSConnection(_CheckedHTTPConnection, HTTPSConnection):
    """TLS over the checked socket: urllib3 verifies the certificate against ``host``."""


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _CheckedPoolManager(PoolManager):
    """Pools whose connections open their sockets through ``guard``."""

    def __init__(self, guard: HostGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard
        self.pool_classes_by_scheme = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        # Given to each connection of the pool; set here because pool keys take no extras.
        pool.conn_kw["guard"] = self._guard
        return pool


class _CheckedAdapter(HTTPAdapter):
    def __init__(self, guard: HostGuard) -> None:
        self._guard = guard
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self.poolmanager = _CheckedPoolManager(
            self._guard, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        response = super().send(request, *args, **kwargs)
        if 300 <= response.status_code < 400:
            status = response.status_code
            response.close()
            raise OAuthRequestRejected(
                f"token endpoint answered HTTP {status} (a redirect, which is never followed "
                "for token requests): configure the final token URL"
            )
        return response


def checked_session(session: requests.Session, *, allow_private_hosts: bool) -> None:
    """Make ``session`` connect through the guard, refuse redirects, ignore the environment."""
    adapter = _CheckedAdapter(HostGuard(allow_private_hosts))
    session.trust_env = False
    session.mount("https://", adapter)
    session.mount("http://", adapter)
