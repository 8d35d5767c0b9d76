"""What the service sends to and reports from a tenant's mail server: logins with unusual
credentials against Dovecot, and servers that are not IMAP servers at all."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from email_service.devserver.dovecot import DovecotServer
from email_service.model import Security
from tests.conftest import MailUser
from tests.helpers import unique, wait_for
from tests.integration.api_harness import ApiHarness, provider_body
from tests.integration.service import InProcessWorker

PROVIDERS = "/api/v1/providers"

#: What other services on an internal network say first (NATS, MariaDB): never for a tenant.
BANNERS = {
    "nats": b'INFO {"server_id":"NDKZ-INTERNAL","version":"2.10.7","max_payload":1048576}\r\n',
    "mariadb": b"J\x00\x00\x00\n5.5.5-10.11.6-MariaDB-0+deb12u1\x00\x1a\x00\x00\x00INTERNAL"
    b"\x00\xfe\xf7\x08\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00",
}
#: Bytes of the banners that must not come back in an error.
BANNER_MARKERS = ("INFO", "server_id", "NDKZ", "MariaDB", "INTERNAL", "\\x00", "\x00")


class BannerServer:
    """Answers every connection with ``banner``, then waits for the client to hang up."""

    def __init__(self, banner: bytes) -> None:
        self.banner = banner
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with client:
                client.sendall(self.banner)
                client.settimeout(10)
                try:
                    while client.recv(4096):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()
        self._thread.join(5)


def _test_call(api: ApiHarness, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    created = api.call("POST", PROVIDERS, tenant=tenant, json_body=body)
    assert created.status == 201, created
    reply = api.call("POST", f"{PROVIDERS}/{created.json()['id']}/test", tenant=tenant)
    assert reply.status == 200, reply
    result: dict[str, Any] = reply.json()
    return result


@pytest.mark.parametrize("password_kind", ["quotes-and-backslash", "non-ascii"])
def test_a_username_with_spaces_and_quotes_logs_in(
    api: ApiHarness, dovecot: DovecotServer, tenant: str, password_kind: str
) -> None:
    name = f'o\'brien "support" {unique("team")}'
    password = {
        "quotes-and-backslash": f'pa"ss\\wo rd-{unique("x")}',
        "non-ascii": f"pässwörd-ñ-€-{unique('x')}",
    }[password_kind]
    dovecot.add_user(name, password)
    user = MailUser(name, password)
    body = provider_body(dovecot, user, mailbox="support@example.com")
    result = _test_call(api, tenant, body)
    assert result["ok"] is True, result
    assert "INBOX" in result["foldersFound"]


def test_a_refused_non_ascii_password_is_never_echoed(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    wrong = "wröng-ßecret-ü"
    result = _test_call(api, tenant, provider_body(dovecot, mail_user, password=wrong))
    assert result["ok"] is False and result["stage"] == "login", result
    error = str(result["error"])
    assert error.isascii() and "position" not in error, error
    assert "ecret" not in error and "wr" not in error.replace("wrong", ""), error


@pytest.mark.parametrize("service", sorted(BANNERS))
def test_a_non_imap_service_s_banner_never_reaches_the_tenant(
    api: ApiHarness,
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    service: str,
) -> None:
    server = BannerServer(BANNERS[service])
    try:
        body = provider_body(dovecot, mail_user, port=server.port)
        result = _test_call(api, tenant, body)
        assert result["ok"] is False, result
        provider = worker.add_provider(
            tenant,
            dovecot,
            mail_user.name,
            mail_user.password,
            host="127.0.0.1",
            port=server.port,
            security=Security.NONE,
        )
        worker.start()
        record = wait_for(
            lambda: (
                (r := worker.parts.providers.load_record(provider.id, tenant)).error_message and r
            ),
            timeout_s=15,
            what="the worker's failure recorded on the provider",
        )
    finally:
        server.close()
    last_error = worker.parts.providers.load_status(provider.id, tenant).last_error or ""
    for error in (str(result["error"]), record.error_message or "", last_error):
        assert not any(marker in error for marker in BANNER_MARKERS), error
