"""Downloads of a message and its parts through the API, from a real Dovecot mailbox."""

from __future__ import annotations

import email.policy
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import quote

import pytest
from sqlalchemy import update

from email_service.devserver.dovecot import DovecotServer
from email_service.imap.session import ConnectOptions, ImapSession, PasswordLogin
from email_service.model import REAUTH_REQUIRED, ImapEndpoint, Security
from email_service.store.connection_records import ConnectionRecordStore
from email_service.store.leases import LeaseStore
from email_service.store.schema import email_providers
from tests.conftest import MailUser
from tests.helpers import wait_for
from tests.integration.api_harness import ApiHarness, provider_body

pytestmark = pytest.mark.integration

PDF = os.urandom(2 * 1024 * 1024 + 7)
LOG_TEXT = "Grüße, línea 1 = ok\n" * 5000
LOG_NAME = "journal d'été.log"
OPTIONS = ConnectOptions(timeout_s=10, keepalive=False, verify_tls=False, allow_private_hosts=True)


def mail_with_parts() -> bytes:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = "Ann <ann@example.com>"
    message["To"] = "support@example.com"
    message["Subject"] = "invoice and log"
    message["Message-ID"] = f"<{uuid.uuid4()}@example.com>"
    message.set_content("see attached")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    message.add_attachment(LOG_TEXT, filename=LOG_NAME, cte="quoted-printable")
    return bytes(message)


@dataclass(frozen=True)
class Delivered:
    provider_id: str
    uid_validity: int
    uid: int

    def path(self, suffix: str, *, folder: str = "INBOX", uid: int | None = None) -> str:
        return (
            f"/api/v1/providers/{self.provider_id}/messages/{quote(folder, safe='')}/"
            f"{self.uid_validity}/{uid or self.uid}/{suffix}"
        )


@contextmanager
def mailbox(dovecot: DovecotServer, user: MailUser) -> Iterator[ImapSession]:
    session = ImapSession.open(
        ImapEndpoint("127.0.0.1", dovecot.imap_port, Security.NONE),
        PasswordLogin(user.name, user.password),
        OPTIONS,
    )
    try:
        yield session
    finally:
        session.close()


def flags_of(dovecot: DovecotServer, user: MailUser, uid: int) -> tuple[str, ...]:
    with mailbox(dovecot, user) as session:
        session.examine("INBOX")
        (fetched,) = session.fetch_messages([uid])
    return fetched.flags


@pytest.fixture
def delivered(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> Delivered:
    dovecot.create_folder(mail_user.name, "Lists/dev")
    body = provider_body(dovecot, mail_user, folders=["INBOX", "Lists/dev"])
    created = api.call("POST", "/api/v1/providers", tenant=tenant, json_body=body)
    assert created.status == 201, created
    dovecot.deliver(mail_user.name, mail_with_parts())
    with mailbox(dovecot, mail_user) as session:
        status = session.examine("INBOX")
        (uid,) = session.search_all_uids()
    return Delivered(created.json()["id"], status.uid_validity, uid)


def test_the_raw_message_is_the_servers_bytes_and_stays_unseen(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str, delivered: Delivered
) -> None:
    reply = api.call("GET", delivered.path("raw"), tenant=tenant)

    assert reply.status == 200, reply
    with mailbox(dovecot, mail_user) as session:
        session.examine("INBOX")
        (stored,) = session.fetch_messages([delivered.uid])
    assert reply.body == stored.raw
    assert reply.headers["Content-Type"] == "message/rfc822"
    assert (
        reply.headers["Content-Disposition"]
        == f'attachment; filename="message-{delivered.uid}.eml"'
    )
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Transfer-Encoding"] == "chunked"
    assert "X-Request-Id" in reply.headers
    assert "\\Seen" not in flags_of(dovecot, mail_user, delivered.uid)


def test_parts_are_decoded_byte_exact_with_their_type_and_name(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str, delivered: Delivered
) -> None:
    pdf = api.call("GET", delivered.path("parts/2"), tenant=tenant)
    log = api.call(
        "GET",
        delivered.path("parts/3"),
        tenant=tenant,
        headers={"Origin": "https://ui.example.com"},
    )

    assert pdf.status == 200, pdf
    assert pdf.body == PDF
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.headers["Content-Disposition"] == 'attachment; filename="invoice.pdf"'
    assert log.status == 200, log
    assert log.body.decode("utf-8").replace("\r\n", "\n") == LOG_TEXT
    assert log.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert log.headers["Content-Disposition"] == (
        'attachment; filename="journal d__t_.log"; '
        "filename*=UTF-8''journal%20d%27%C3%A9t%C3%A9.log"
    )
    assert log.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    assert "\\Seen" not in flags_of(dovecot, mail_user, delivered.uid)


@pytest.mark.parametrize(
    ("suffix", "change", "status", "error"),
    [
        ("parts/9", {}, 404, "part_not_found"),
        ("parts/2.1", {}, 404, "part_not_found"),
        ("raw", {"uid_validity": 1}, 404, "uidvalidity_changed"),
        ("raw", {"uid": 999}, 404, "message_not_found"),
        ("raw", {"folder": "Archive"}, 404, "folder_not_configured"),
        # reaches the server: "Lists/dev" has a UIDVALIDITY of its own
        ("raw", {"folder": "Lists/dev"}, 404, "uidvalidity_changed"),
        ("parts/x", {}, 422, "validation_failed"),
        ("raw", {"uid": 0}, 422, "validation_failed"),
    ],
    ids=[
        "no-such-part",
        "no-such-subpart",
        "uidvalidity-changed",
        "no-such-uid",
        "folder-not-followed",
        "other-folder-slash-in-name",
        "bad-part-id",
        "uid-zero",
    ],
)
def test_what_is_not_there_answers_what_is_missing(
    api: ApiHarness,
    tenant: str,
    delivered: Delivered,
    suffix: str,
    change: dict[str, object],
    status: int,
    error: str,
) -> None:
    uid_validity = change.get("uid_validity")
    target = Delivered(
        delivered.provider_id,
        delivered.uid_validity + 1 if uid_validity else delivered.uid_validity,
        delivered.uid,
    )
    path = target.path(
        suffix,
        folder=str(change.get("folder", "INBOX")),
        uid=int(str(change["uid"])) if "uid" in change else None,
    )
    if change.get("uid") == 0:
        path = path.replace(f"/{delivered.uid}/raw", "/0/raw")

    reply = api.call("GET", path, tenant=tenant)

    assert (reply.status, reply.json()["error"]) == (status, error), reply


def test_a_deleted_message_answers_404(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str, delivered: Delivered
) -> None:
    dovecot.doveadm("expunge", "-u", mail_user.name, "mailbox", "INBOX", "all")

    reply = api.call("GET", delivered.path("parts/2"), tenant=tenant)

    assert (reply.status, reply.json()["error"]) == (404, "message_not_found"), reply


def test_a_parked_provider_answers_409(api: ApiHarness, tenant: str, delivered: Delivered) -> None:
    with api.parts.engine.begin() as connection:
        connection.execute(
            update(email_providers)
            .where(email_providers.c.id == delivered.provider_id)
            .values(status=REAUTH_REQUIRED)
        )

    reply = api.call("GET", delivered.path("raw"), tenant=tenant)

    assert (reply.status, reply.json()["error"]) == (409, "reauth_required"), reply


def budget_of_two_with_worker_holding(
    api: ApiHarness, tenant: str, delivered: Delivered, held: int
) -> tuple[str, str]:
    """The provider may hold 2 connections; a live worker's lease records ``held``."""
    patched = api.call(
        "PATCH",
        f"/api/v1/providers/{delivered.provider_id}",
        tenant=tenant,
        json_body={"maxConnections": 2},
    )
    assert patched.status == 200, patched
    ref = (tenant, delivered.provider_id)
    LeaseStore(api.parts.engine).take_lease(ref, "worker-1", ttl_ms=60_000)
    ConnectionRecordStore(api.parts.engine).exchange(
        "worker-1", [tenant], lambda _seen: {ref: held}
    )
    return ref


def test_downloads_wait_when_workers_hold_the_providers_connection_budget(
    api: ApiHarness, tenant: str, delivered: Delivered
) -> None:
    ref = budget_of_two_with_worker_holding(api, tenant, delivered, 2)

    refused = api.call("GET", delivered.path("raw"), tenant=tenant)
    ConnectionRecordStore(api.parts.engine).record("worker-1", {ref: 1})
    served = api.call("GET", delivered.path("raw"), tenant=tenant)

    assert (refused.status, refused.json()["error"]) == (429, "rate_limited"), refused
    assert "2 connections are all in use" in refused.json()["message"]
    assert refused.headers["Retry-After"] == "2"
    assert served.status == 200, served


def test_a_running_download_counts_toward_the_providers_budget(
    api: ApiHarness, tenant: str, delivered: Delivered
) -> None:
    budget_of_two_with_worker_holding(api, tenant, delivered, 1)
    # A client that reads nothing past the first bytes: its download stays open, holding the
    # provider's last free connection (a small receive buffer, so the server cannot finish).
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", api.port))
    slow.sendall(
        f"GET {delivered.path('parts/2')} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {api.token(tenant)}\r\n\r\n".encode()
    )
    try:
        assert slow.recv(12) == b"HTTP/1.1 200"
        refused = api.call("GET", delivered.path("raw"), tenant=tenant)
    finally:
        slow.close()

    assert (refused.status, refused.json()["error"]) == (429, "rate_limited"), refused
    assert "2 connections are all in use" in refused.json()["message"]
    wait_for(
        lambda: api.call("GET", delivered.path("raw"), tenant=tenant).status == 200,
        timeout_s=30,
        what="the connection given back once the slow client went away",
    )
