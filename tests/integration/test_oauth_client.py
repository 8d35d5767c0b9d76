"""The OAuth client against a real server: which failures park and which back off."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from email_service.errors import (
    HostRefused,
    OAuthRequestRejected,
    ReauthorizationRequired,
    TokenEndpointUnavailable,
)
from email_service.oauth.client import OAuthClientConfig, refresh_access_token
from tests.oauth_server import OAuthTestServer


@pytest.fixture(scope="module")
def server() -> Iterator[OAuthTestServer]:
    started = OAuthTestServer().start()
    yield started
    started.stop()


def config(
    server: OAuthTestServer,
    *,
    token_url: str | None = None,
    secret: str | None = None,
    allow_private_hosts: bool = True,
) -> OAuthClientConfig:
    return OAuthClientConfig(
        authorize_url=server.authorize_url,
        token_url=token_url or server.token_url,
        client_id=server.client_id,
        client_secret=secret or server.client_secret,
        scopes=("mail",),
        allow_private_hosts=allow_private_hosts,  # the test server is on loopback
    )


def test_refresh_rotates_the_refresh_token(server: OAuthTestServer) -> None:
    _access, refresh = server.issue_grant()
    issued = refresh_access_token(config(server), refresh_token=refresh, timeout_s=5)
    assert issued.refresh_token and issued.refresh_token != refresh
    assert issued.expires_in_s == 3600
    assert issued.access_token not in repr(issued)
    assert issued.refresh_token not in repr(issued)


def test_a_revoked_grant_or_a_wrong_client_secret_needs_reauthorisation(
    server: OAuthTestServer,
) -> None:
    with pytest.raises(ReauthorizationRequired, match="invalid_grant"):
        refresh_access_token(config(server), refresh_token="rt-unknown", timeout_s=5)
    _access, refresh = server.issue_grant()
    with pytest.raises(ReauthorizationRequired, match="invalid_client"):
        refresh_access_token(config(server, secret="wrong"), refresh_token=refresh, timeout_s=5)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_transient(server: OAuthTestServer, status: int) -> None:
    _access, refresh = server.issue_grant()
    server.fail_token_status = status
    try:
        with pytest.raises(TokenEndpointUnavailable, match=str(status)):
            refresh_access_token(config(server), refresh_token=refresh, timeout_s=5)
    finally:
        server.fail_token_status = None
    assert refresh in server.live_refresh_tokens()  # nothing was spent


def test_an_unreachable_or_stalled_endpoint_is_transient(server: OAuthTestServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    unreachable = config(server, token_url=f"http://127.0.0.1:{closed_port}/token")
    with pytest.raises(TokenEndpointUnavailable, match="unreachable"):
        refresh_access_token(unreachable, refresh_token="rt", timeout_s=2)
    server.token_stall_s = 1.0
    try:
        with pytest.raises(TokenEndpointUnavailable):
            refresh_access_token(config(server), refresh_token="rt", timeout_s=0.3)
    finally:
        server.token_stall_s = 0.0


def test_a_refresh_is_checked_at_every_use_and_never_follows_a_redirect(
    server: OAuthTestServer,
) -> None:
    _access, refresh = server.issue_grant()
    exchanges = len(server.log.token_clients)
    on_loopback = config(server, token_url=server.token_url.replace("127.0.0.1", "localhost"))
    for refused in (
        config(server, allow_private_hosts=False),  # plain http: refused before resolving
        config(
            server,
            token_url=on_loopback.token_url.replace("http:", "https:"),
            allow_private_hosts=False,
        ),
    ):
        with pytest.raises(HostRefused):
            refresh_access_token(refused, refresh_token=refresh, timeout_s=5)
    assert len(server.log.token_clients) == exchanges  # nothing was sent
    server.token_redirect = True
    try:
        with pytest.raises(OAuthRequestRejected, match="redirect"):
            refresh_access_token(config(server), refresh_token=refresh, timeout_s=5)
    finally:
        server.token_redirect = False
    assert server.log.internal_requests == []
    assert refresh in server.live_refresh_tokens()
