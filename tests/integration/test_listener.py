"""Folder listeners against real Dovecot, PostgreSQL and Redis."""

from __future__ import annotations

import logging
import ssl
import threading

import imapclient
import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from email_service.devserver.fake_imap import FakeImapServer
from email_service.model import FolderKey, Security
from email_service.publish.events import event_id_for
from email_service.settings import Settings
from tests.conftest import MailUser
from tests.helpers import (
    make_message,
    provider_row,
    stream_events,
    subjects,
    wait_for,
    wait_for_stream_entries,
)
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.integration


def imap_client(dovecot: DovecotServer, user: MailUser) -> imapclient.IMAPClient:
    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    client = imapclient.IMAPClient("localhost", port=dovecot.imaps_port, ssl_context=context)
    client.login(user.name, user.password)
    return client


def test_mail_delivered_while_running_becomes_one_event_each(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    provider = worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    worker.start()
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="listener in IDLE")
    for n in range(3):
        dovecot.deliver(mail_user.name, make_message(f"running {n}", body=f"body {n}"))
    events = wait_for_stream_entries(redis_client, stream, 3)
    assert subjects(events) == ["running 0", "running 1", "running 2"]
    first = events[0]
    assert first["event_name"] == first["event_type"] == "INBOUND_EMAIL_RECEIVED"
    assert first["tenant"] == tenant
    data = first["payload"]["emailData"]
    assert first["payload"]["providerId"] == provider.id
    assert data["imap"]["folder"] == "INBOX"
    assert first["event_id"] == event_id_for(
        FolderKey(tenant, provider.id, "INBOX"), data["imap"]["uidValidity"], data["imap"]["uid"]
    )
    assert data["from"]["email"] == "alice@example.com"
    assert "body 0" in data["body"]["text"]
    wait_for(lambda: worker.cursor(provider) == 3, timeout_s=5, what="cursor at uid 3")
    row = provider_row(worker.parts.engine, provider.id, tenant)
    assert row["status"] == "connected"
    assert row["folder_state"]["INBOX"]["last_uid"] == 3


def test_new_folder_starts_from_the_newest_window_and_seen_mail_is_published(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    for n in range(8):
        dovecot.deliver(mail_user.name, make_message(f"old {n}"))
    client = imap_client(dovecot, mail_user)
    client.select_folder("INBOX")
    client.add_flags([7, 8], [imapclient.SEEN])  # another client read the newest two
    client.logout()
    worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    worker.start()
    events = wait_for_stream_entries(redis_client, stream, 5)
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE")
    assert subjects(stream_events(redis_client, stream)) == [f"old {n}" for n in range(3, 8)]
    assert "\\Seen" in events[-1]["payload"]["emailData"]["imap"]["flags"]


def test_mail_delivered_while_stopped_arrives_once_after_restart(
    settings: Settings,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    first = InProcessWorker(settings)
    provider = first.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    first.start()
    wait_for(lambda: first.listener_states() == ["idle"], timeout_s=10, what="IDLE")
    dovecot.deliver(mail_user.name, make_message("before stop"))
    wait_for_stream_entries(redis_client, stream, 1)
    first.close()
    for n in range(12):  # more than the start window: all must come, not just 5
        dovecot.deliver(mail_user.name, make_message(f"while stopped {n}"))
    second = InProcessWorker(settings)
    try:
        second.start()
        events = wait_for_stream_entries(redis_client, stream, 13)
        wait_for(lambda: second.cursor(provider) == 13, timeout_s=5, what="cursor 13")
        events = stream_events(redis_client, stream)
        assert subjects(events) == ["before stop"] + [f"while stopped {n}" for n in range(12)]
        assert len({e["event_id"] for e in events}) == 13
    finally:
        second.close()


def test_uidvalidity_change_rebaselines_without_replaying_old_mail(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    dovecot.create_folder(mail_user.name, "Support")
    provider = worker.add_provider(
        tenant, dovecot, mail_user.name, mail_user.password, folders=["Support"]
    )
    worker.start()
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE")
    for n in range(3):
        dovecot.deliver(mail_user.name, make_message(f"first life {n}"), folder="Support")
    wait_for_stream_entries(redis_client, stream, 3)
    worker.stop()
    dovecot.delete_folder(mail_user.name, "Support")
    dovecot.create_folder(mail_user.name, "Support")
    for n in range(9):
        dovecot.deliver(mail_user.name, make_message(f"second life {n}"), folder="Support")
    worker.start()
    wait_for_stream_entries(redis_client, stream, 8)
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE")
    events = stream_events(redis_client, stream)
    assert subjects(events)[3:] == [f"second life {n}" for n in range(4, 9)]
    validities = {e["payload"]["emailData"]["imap"]["uidValidity"] for e in events}
    assert len(validities) == 2
    assert worker.cursor(provider, "Support") == 9


def test_wrong_password_is_recorded_and_retried_without_events(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    provider = worker.add_provider(tenant, dovecot, mail_user.name, "wrong-password")
    worker.start()
    row = wait_for(
        lambda: (
            (r := provider_row(worker.parts.engine, provider.id, tenant))["status"] == "error" and r
        ),
        timeout_s=15,
        what="error status",
    )
    assert "rejected the login" in row["last_error"]
    assert "wrong-password" not in row["last_error"]
    assert worker.listener_states() in (["parked"], ["connecting"])
    assert stream_events(redis_client, stream) == []


@pytest.mark.parametrize(
    ("host", "ca_file", "expected"),
    [
        ("no-such-host.invalid", "default", "does not resolve"),
        ("localhost", None, "did not verify"),
    ],
    ids=["unknown-host", "certificate-not-trusted"],
)
def test_connection_failures_are_recorded_clearly(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    host: str,
    ca_file: str | None,
    expected: str,
) -> None:
    provider = worker.add_provider(
        tenant, dovecot, mail_user.name, mail_user.password, host=host, ca_file=ca_file
    )
    worker.start()
    row = wait_for(
        lambda: (r := provider_row(worker.parts.engine, provider.id, tenant))["last_error"] and r,
        timeout_s=15,
        what="last_error",
    )
    assert expected in row["last_error"]
    assert row["status"] == "error"


def test_starttls_and_plaintext_security_modes(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    worker.add_provider(
        tenant, dovecot, mail_user.name, mail_user.password, security=Security.STARTTLS
    )
    worker.add_provider(
        tenant,
        dovecot,
        mail_user.name,
        mail_user.password,
        security=Security.NONE,
        host="127.0.0.1",
        ca_file=None,
    )
    worker.start()
    wait_for(lambda: worker.listener_states() == ["idle", "idle"], timeout_s=10, what="IDLE")
    dovecot.deliver(mail_user.name, make_message("both see it"))
    events = wait_for_stream_entries(redis_client, stream, 2)
    assert subjects(events) == ["both see it", "both see it"]
    assert len({e["payload"]["providerId"] for e in events}) == 2


def test_mail_arriving_while_the_listener_returns_to_idle_is_not_missed(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    """Each message is delivered the moment the previous event appears, i.e. while the
    listener is still saving its cursor and re-entering IDLE (the race the bench found)."""
    worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    worker.start()
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE")
    for n in range(15):
        dovecot.deliver(mail_user.name, make_message(f"back to back {n}"))
        wait_for_stream_entries(redis_client, stream, n + 1, timeout_s=5)
    assert subjects(stream_events(redis_client, stream)) == [f"back to back {n}" for n in range(15)]


def test_the_servers_bye_text_is_the_recorded_reason(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kicked while in IDLE, Dovecot says ``* BYE Server shutting down.`` and hangs up: that
    text reaches the log and the provider row (not the DONE that could not be sent)."""
    caplog.set_level(logging.INFO, logger="email_service")
    provider = worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    worker.start()
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE")
    dovecot.doveadm("kick", mail_user.name)
    row = wait_for(
        lambda: (
            (r := provider_row(worker.parts.engine, provider.id, tenant))["status"] == "error" and r
        ),
        timeout_s=10,
        what="the disconnect recorded",
    )
    assert "Server shutting down" in row["error_message"], row
    assert any("Server shutting down" in r.getMessage() for r in caplog.records)
    wait_for(
        lambda: provider_row(worker.parts.engine, provider.id, tenant)["status"] == "connected",
        timeout_s=10,
        what="reconnected",
    )


def test_a_requested_stop_is_no_warning_and_no_error(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    tenant: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stop cuts the connection, also in the middle of a command (here a UID SEARCH the
    server never answers): that is how the stop is seen at once, not a transient error to
    warn about or to show on the provider row."""
    searching = threading.Event()

    def never_answer(tag: bytes) -> bytes:
        searching.set()
        return b""

    with FakeImapServer.start({"UID": never_answer}) as server:
        provider = worker.add_provider(
            tenant,
            dovecot,
            "someone",
            "secret",
            host="127.0.0.1",
            port=server.port,
            security=Security.NONE,
            ca_file=None,
        )
        worker.start()
        wait_for(searching.is_set, timeout_s=10, what="the UID SEARCH sent")
        caplog.set_level(logging.INFO, logger="email_service")
        worker.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
    row = provider_row(worker.parts.engine, provider.id, tenant)
    assert row["status"] != "error" and row["last_error"] is None, row
