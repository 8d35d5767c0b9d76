"""The throwaway Dovecot: logins (plain, STARTTLS, TLS, XOAUTH2), delivery, IDLE, shutdown."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from email_service.devserver import DevServerError, DovecotServer, start_dovecot

pytestmark = pytest.mark.integration

#: Client-side socket timeout; every server answer here takes milliseconds.
IMAP_TIMEOUT_S = 10.0

#: Dovecot pushes EXISTS about 500 ms after a delivery; ten times that is a clear failure.
IDLE_PUSH_TIMEOUT_S = 5.0


class Introspection:
    """A tiny RFC 7662 endpoint: known tokens are active for their user, others are not."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                token = form.get("token", [""])[0]
                owner.requests += 1
                user = owner.tokens.get(token)
                answer = {"active": True, "username": user} if user else {"active": False}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/introspect"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def introspection() -> Iterator[Introspection]:
    endpoint = Introspection()
    yield endpoint
    endpoint.close()


#: Users created with the shared server; handing them out keeps add_user's wait (Dovecot
#: looks at a changed passwd-file at most once a second) out of every test's setup.
POOL_SIZE = 32


@pytest.fixture(scope="module")
def user_pool() -> list[tuple[str, str]]:
    return [
        (f"u{index}-{secrets.token_hex(3)}", secrets.token_urlsafe(12))
        for index in range(POOL_SIZE)
    ]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    introspection: Introspection,
    user_pool: list[tuple[str, str]],
) -> Iterator[DovecotServer]:
    with start_dovecot(
        tmp_path_factory.mktemp("dovecot"),
        users=user_pool,
        oauth2_introspection_url=introspection.url,
        max_connections=200,
    ) as running:
        yield running


@pytest.fixture
def user(server: DovecotServer, user_pool: list[tuple[str, str]]) -> tuple[str, str]:
    """A user of the shared server that no other test touches."""
    return user_pool.pop()


def plain_client(server: DovecotServer) -> IMAPClient:
    return IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=IMAP_TIMEOUT_S)


def message(subject: str) -> bytes:
    return (
        f"From: sender@example.com\r\nTo: rcpt@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.com>\r\n\r\nbody of {subject}\r\n"
    ).encode()


def instance_processes(instance_name: str) -> list[str]:
    """Command lines of every process on the machine that belongs to ``instance_name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"dovecot-{instance_name}/" in cmdline:
            found.append(cmdline)
    return found


def test_plain_login_offers_idle_and_starttls(server: DovecotServer, user: tuple[str, str]) -> None:
    with plain_client(server) as client:
        assert b"STARTTLS" in client.capabilities()
        client.login(*user)
        assert client.has_capability("IDLE")
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_starttls_login_verifies_the_certificate(
    server: DovecotServer, user: tuple[str, str]
) -> None:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    with plain_client(server) as client:
        client.starttls(context)
        client.login(*user)
        assert client.socket().version() in {"TLSv1.2", "TLSv1.3"}


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_implicit_tls_login_verifies_the_certificate(
    server: DovecotServer, user: tuple[str, str], hostname: str
) -> None:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    with IMAPClient(
        hostname, port=server.imaps_port, ssl=True, ssl_context=context, timeout=IMAP_TIMEOUT_S
    ) as client:
        client.login(*user)
        assert client.socket().getpeercert() is not None


def test_tls_without_the_ca_file_is_refused(server: DovecotServer) -> None:
    context = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            server.host,
            port=server.imaps_port,
            ssl=True,
            ssl_context=context,
            timeout=IMAP_TIMEOUT_S,
        )


def test_wrong_password_fails_fast_and_does_not_slow_the_next_login(
    server: DovecotServer, user: tuple[str, str]
) -> None:
    name, password = user
    for _ in range(3):
        started = time.monotonic()
        with plain_client(server) as client, pytest.raises(LoginError):
            client.login(name, password + "-wrong")
        assert time.monotonic() - started < 3.0

    started = time.monotonic()
    with plain_client(server) as client:
        client.login(name, password)
    assert time.monotonic() - started < 1.0


def test_add_user_works_at_once_for_new_users_and_new_passwords(server: DovecotServer) -> None:
    name = f"new-{secrets.token_hex(4)}"
    server.add_user(name, "first")
    with plain_client(server) as client:
        client.login(name, "first")

    server.add_user(name, "other")  # same size, likely the same second: mtime must move
    with plain_client(server) as client:
        client.login(name, "other")
    with plain_client(server) as client, pytest.raises(LoginError):
        client.login(name, "first")


def test_delivery_to_inbox_and_to_a_folder_is_searchable(
    server: DovecotServer, user: tuple[str, str]
) -> None:
    name, _ = user
    server.deliver(name, message("to-inbox"))
    server.create_folder(name, "Archive/2024")
    server.deliver(name, message("to-archive"), folder="Archive/2024")

    with plain_client(server) as client:
        client.login(*user)
        client.select_folder("INBOX", readonly=True)
        assert len(client.search(["HEADER", "Subject", "to-inbox"])) == 1
        assert client.search(["HEADER", "Subject", "to-archive"]) == []
        client.select_folder("Archive/2024", readonly=True)
        assert len(client.search(["HEADER", "Subject", "to-archive"])) == 1
        assert any(folder[2] == "Archive/2024" for folder in client.list_sub_folders())


def test_delivery_to_a_missing_folder_says_why(
    server: DovecotServer, user: tuple[str, str]
) -> None:
    with pytest.raises(DevServerError, match="doveadm save"):
        server.deliver(user[0], message("nowhere"), folder="Missing")


def test_idle_client_receives_exists_after_delivery(
    server: DovecotServer, user: tuple[str, str]
) -> None:
    name, _ = user
    with plain_client(server) as client:
        client.login(*user)
        client.select_folder("INBOX")
        client.idle()
        server.deliver(name, message("pushed"))
        deadline = time.monotonic() + IDLE_PUSH_TIMEOUT_S
        responses: list[tuple[object, ...]] = []
        while time.monotonic() < deadline and (1, b"EXISTS") not in responses:
            responses += client.idle_check(timeout=deadline - time.monotonic())
        client.idle_done()
    assert (1, b"EXISTS") in responses


def test_deleting_and_recreating_a_folder_changes_uidvalidity(
    server: DovecotServer, user: tuple[str, str]
) -> None:
    name, _ = user
    server.create_folder(name, "Work")
    server.deliver(name, message("old"), folder="Work")
    with plain_client(server) as client:
        client.login(*user)
        before = client.folder_status("Work", ["UIDVALIDITY"])[b"UIDVALIDITY"]

    server.delete_folder(name, "Work")
    server.create_folder(name, "Work")

    with plain_client(server) as client:
        client.login(*user)
        after = client.folder_status("Work", ["UIDVALIDITY", "MESSAGES"])
    assert after[b"UIDVALIDITY"] != before
    assert after[b"MESSAGES"] == 0


def test_xoauth2_and_oauthbearer_logins_go_through_introspection(
    server: DovecotServer, user: tuple[str, str], introspection: Introspection
) -> None:
    name, _ = user
    token = secrets.token_urlsafe(24)
    introspection.tokens[token] = name
    requests_before = introspection.requests

    with plain_client(server) as client:
        client.oauth2_login(name, token)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    with plain_client(server) as client:
        client.oauthbearer_login(name, token)
    # auth_cache_size = 0: every login asks the endpoint again.
    assert introspection.requests - requests_before == 2

    with plain_client(server) as client, pytest.raises(LoginError):
        client.oauth2_login(name, "revoked-" + token)


def test_stop_leaves_no_process_and_two_servers_run_side_by_side(tmp_path: Path) -> None:
    first = start_dovecot(tmp_path / "a", users=[("alice", "pw-a")], max_connections=10)
    second = start_dovecot(tmp_path / "b", users=[("alice", "pw-b")], max_connections=10)
    try:
        assert {first.imap_port, first.imaps_port, first.lmtp_port}.isdisjoint(
            {second.imap_port, second.imaps_port, second.lmtp_port}
        )
        for running, password in ((first, "pw-a"), (second, "pw-b")):
            with plain_client(running) as client:
                client.login("alice", password)
            assert instance_processes(running.instance_name)
    finally:
        first.stop()
        second.stop()

    for stopped in (first, second):
        assert stopped.pids() == []
        assert instance_processes(stopped.instance_name) == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((stopped.host, stopped.imap_port), timeout=1).close()
    first.stop()  # idempotent


def test_restart_in_the_same_workdir_keeps_users_and_mail(tmp_path: Path) -> None:
    with start_dovecot(tmp_path, users=[("bob", "pw")], max_connections=10) as first:
        first.deliver("bob", message("kept"))
    with start_dovecot(tmp_path, max_connections=10) as second, plain_client(second) as client:
        client.login("bob", "pw")
        assert client.select_folder("INBOX")[b"EXISTS"] == 1


def test_a_port_in_use_fails_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(DevServerError, match="Address already in use") as failure:
            start_dovecot(tmp_path, ports=(taken, 0, 0), max_connections=10)
    assert "dovecot" in str(failure.value)
