"""Every connection of ours that writes small commands has ``TCP_NODELAY`` (real servers)."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import Engine

from email_service.devserver.mailserver import MailServer
from email_service.imap.session import ConnectOptions, ImapSession, PasswordLogin
from email_service.model import ImapEndpoint, Security
from email_service.publish.publisher import connect_redis
from email_service.store.engine import make_engine
from tests.conftest import MailUser

pytestmark = pytest.mark.integration


def nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize(
    ("security", "keepalive"),
    [(Security.TLS, True), (Security.STARTTLS, False), (Security.NONE, True)],
    ids=["tls-keepalive", "starttls", "plain-keepalive"],
)
def test_imap_sockets_send_each_command_at_once(
    imap_server: MailServer, imap_user: MailUser, security: Security, keepalive: bool
) -> None:
    port = imap_server.imaps_port if security is Security.TLS else imap_server.imap_port
    session = ImapSession.open(
        ImapEndpoint("localhost", port, security, tls_ca_file=str(imap_server.ca_file)),
        PasswordLogin(imap_user.name, imap_user.password),
        ConnectOptions(
            timeout_s=10, keepalive=keepalive, verify_tls=True, allow_private_hosts=True
        ),
    )
    try:
        sock = session._client.socket()
        assert nodelay(sock) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == int(keepalive)
    finally:
        session.close()


def test_redis_and_postgresql_clients_have_it_from_their_libraries(
    redis_url: str, database_url: str
) -> None:
    client = connect_redis(redis_url)
    try:
        client.ping()
        connection = client.connection_pool.get_connection()
        try:
            assert connection._sock is not None and nodelay(connection._sock) == 1
        finally:
            client.connection_pool.release(connection)
    finally:
        client.close()
    engine: Engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None
            with socket.socket(fileno=raw.fileno()) as sock:
                try:
                    assert nodelay(sock) == 1
                finally:
                    sock.detach()  # the connection's, not ours to close
    finally:
        engine.dispose()
