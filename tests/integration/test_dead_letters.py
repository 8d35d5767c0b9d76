"""Dead letters against real Dovecot, PostgreSQL and Redis: made, counted, listed, replayed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from email_service.ingest.limits import entry_bytes
from email_service.model import FolderKey, ProviderConfig
from email_service.publish.dead_letters import ALREADY, FAILED, MISSING, PUBLISHED, DeadLetterQueue
from email_service.publish.events import event_id_for
from email_service.publish.redis_keys import provider_stats_key
from email_service.settings import Settings
from email_service.worker.process import WorkerParts
from tests.conftest import MailUser
from tests.helpers import (
    dead_letter_stream,
    make_message,
    stream_events,
    subjects,
    wait_for,
    wait_for_stream_entries,
)
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.integration


def message_file(dovecot: DovecotServer, user: str, marker: bytes) -> Path:
    """The maildir file of the one message of ``user`` that contains ``marker``."""
    found = [
        path
        for path in (dovecot.workdir / "home" / user / "Maildir").rglob("*")
        if path.parent.name in ("cur", "new") and marker in path.read_bytes()
    ]
    assert len(found) == 1, found
    return found[0]


def stored_fields(event: dict[str, Any]) -> dict[str, str]:
    """The fields of a stream entry as ``stream_events`` returns it (less what it added)."""
    return {k: v for k, v in event.items() if k not in ("id", "payload")}


def stats(client: redis.Redis[bytes], provider: ProviderConfig) -> dict[str, str]:
    values = client.hgetall(provider_stats_key(provider.tenant, provider.id))
    return {k.decode(): v.decode() for k, v in values.items()}


def queue_for(settings: Settings, client: redis.Redis[bytes]) -> DeadLetterQueue:
    return DeadLetterQueue(settings, client, build_parts=WorkerParts.build)


def test_a_message_the_server_cannot_fetch_is_a_dead_letter_and_replays_once_fixed(
    worker: InProcessWorker,
    settings: Settings,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    for subject in ("before", "unreadable", "after"):
        dovecot.deliver(mail_user.name, make_message(subject))
    # Dovecot cannot open the file: it answers the FETCH with BYE and drops the connection.
    broken = message_file(dovecot, mail_user.name, b"Subject: unreadable")
    broken.chmod(0)
    provider = worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    worker.start()

    dead = wait_for_stream_entries(redis_client, dead_letter_stream(stream), 1, timeout_s=20)
    events = wait_for_stream_entries(redis_client, stream, 2)
    wait_for(lambda: worker.cursor(provider) == 3, timeout_s=5, what="cursor past the dead letter")
    assert subjects(events) == ["before", "after"]
    assert len(dead) == 1
    entry = dead[0]
    assert (entry["tenant"], entry["providerId"], entry["folder"]) == (tenant, provider.id, "INBOX")
    assert (entry["uid"], entry["reason"], entry["rawRefetch"]) == ("2", "unfetchable", "uid")
    assert "failed 3 times" in entry["detail"] and "rawBase64" not in entry
    metrics = worker.parts.listener_context.metrics
    assert metrics.value("email_service_dead_letters_total", reason="unfetchable") == 1
    assert stats(redis_client, provider)["dead_letters:INBOX"] == "1"
    dovecot.deliver(mail_user.name, make_message("still flowing"))
    wait_for_stream_entries(redis_client, stream, 3)
    worker.stop()

    with queue_for(settings, redis_client) as queue:
        still_broken = queue.replay(entry["id"])
        broken.chmod(0o600)  # the cause is fixed
        first = queue.replay(entry["id"])
        second = queue.replay(entry["id"])

    assert still_broken.status == FAILED
    assert first.status == PUBLISHED and first.stream_id
    assert second.status == MISSING
    events = stream_events(redis_client, stream)
    assert subjects(events) == ["before", "after", "still flowing", "unreadable"]
    key = FolderKey(tenant, provider.id, "INBOX")
    uid_validity = events[-1]["payload"]["emailData"]["imap"]["uidValidity"]
    assert events[-1]["event_id"] == event_id_for(key, uid_validity, 2) == entry["event_id"]
    assert events[-1]["payload"]["emailData"]["imap"]["uid"] == 2
    assert stream_events(redis_client, dead_letter_stream(stream)) == []
    counts = stats(redis_client, provider)
    assert (counts["events:INBOX"], counts["dead_letters_replayed:INBOX"]) == ("4", "1")


def test_an_event_above_the_entry_bound_is_a_dead_letter_replayed_once_the_bound_is_raised(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    small = Settings.from_env({**environ, "EMAIL_SERVICE_MAX_EVENT_BYTES": "4096"})
    worker = InProcessWorker(small)
    try:
        provider = worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
        long_subject = "Quarterly report " + "ü" * 3000  # ~6 KB: bounded at 8 KiB, not cut
        dovecot.deliver(mail_user.name, make_message(long_subject, body="x" * 20_000))
        dovecot.deliver(mail_user.name, make_message("small", body="y" * 20_000))
        worker.start()
        dead = wait_for_stream_entries(redis_client, dead_letter_stream(stream), 1, timeout_s=15)
        events = wait_for_stream_entries(redis_client, stream, 1)
        wait_for(lambda: worker.cursor(provider) == 2, timeout_s=5, what="cursor at uid 2")
    finally:
        worker.close()

    assert dead[0]["reason"] == "event_too_large" and "rawBase64" in dead[0]
    assert subjects(events) == ["small"]
    data = events[0]["payload"]["emailData"]
    assert len(data["body"]["text"]) < 4096  # cut to fit, and said so
    assert {"type": "event", "reason": "event_over_max_bytes", "field": "body.text"}.items() <= (
        data["ingressTruncations"][-1].items()
    )
    assert entry_bytes(stored_fields(events[0])) <= 4096

    with queue_for(small, redis_client) as queue:
        assert queue.replay(dead[0]["id"]).status == FAILED  # still too large
    raised = small.with_changes(ingest={"max_event_bytes": 1024 * 1024})
    with queue_for(raised, redis_client) as queue:
        outcomes = [queue.replay(dead[0]["id"]) for _ in range(2)]
    assert [o.status for o in outcomes] == [PUBLISHED, MISSING]
    replayed = stream_events(redis_client, stream)[-1]["payload"]["emailData"]
    assert replayed["subject"] == long_subject
    assert replayed["body"]["text"].strip() == "x" * 20_000


def test_replaying_a_stale_copy_of_a_replayed_dead_letter_adds_nothing(
    settings: Settings, redis_client: redis.Redis[bytes], stream: str, tenant: str
) -> None:
    key = FolderKey(tenant, "provider-x", "INBOX")
    fields = {
        "event_id": event_id_for(key, 5, 9),
        "tenant": tenant,
        "providerId": key.provider_id,
        "providerType": "imap",
        "folder": "INBOX",
        "uid": "9",
        "uidValidity": "5",
        "reason": "unparseable",
        "detail": "old parser",
        "timestamp": "2026-01-01T00:00:00Z",
        "rawBase64": "RnJvbTogYUBleGFtcGxlLmNvbQ0KU3ViamVjdDogaGkNCg0KYm9keQ0K",
    }
    first_id = redis_client.xadd(dead_letter_stream(stream), fields).decode()
    with queue_for(settings, redis_client) as queue:
        first = queue.replay(first_id)
        copy_id = redis_client.xadd(
            dead_letter_stream(stream), fields
        ).decode()  # restored from a backup
        again = queue.replay(copy_id)

    assert (first.status, again.status) == (PUBLISHED, ALREADY)
    assert again.stream_id == first.stream_id
    assert subjects(stream_events(redis_client, stream)) == ["hi"]
    assert stream_events(redis_client, dead_letter_stream(stream)) == []


def test_replay_after_the_folder_uidvalidity_changed_says_it_cannot_refetch(
    worker: InProcessWorker,
    settings: Settings,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    dovecot.create_folder(mail_user.name, "Support")
    dovecot.deliver(mail_user.name, make_message("gone soon"), folder="Support")
    message_file(dovecot, mail_user.name, b"Subject: gone soon").chmod(0)
    worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password, folders=["Support"])
    worker.start()
    dead = wait_for_stream_entries(redis_client, dead_letter_stream(stream), 1, timeout_s=20)
    worker.stop()
    dovecot.delete_folder(mail_user.name, "Support")
    dovecot.create_folder(mail_user.name, "Support")
    dovecot.deliver(mail_user.name, make_message("new folder"), folder="Support")

    with queue_for(settings, redis_client) as queue:
        outcome = queue.replay(dead[0]["id"])

    assert outcome.status == FAILED
    assert "UIDVALIDITY" in outcome.detail and "changed" in outcome.detail
    assert "cannot be fetched again" in outcome.detail
    assert len(stream_events(redis_client, dead_letter_stream(stream))) == 1  # kept
