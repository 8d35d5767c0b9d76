"""The consumer's contract end to end: mail delivered through Dovecot to a real worker
process, every entry read back from Redis and checked as the product's consumer would; the
consumer's own dead letters beside ours untouched by every ``dlq`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from email_service.contract.check import check_entry
from email_service.devserver.dovecot import DovecotServer
from email_service.publish.events import DEAD_LETTER_PRODUCER
from email_service.publish.redis_keys import provider_stats_key
from tests.conftest import MailUser
from tests.e2e.processes import WorkerProcess, add_dovecot_provider, cli
from tests.helpers import (
    CONSUMER_DEAD_LETTER,
    TENANT_A,
    dead_letter_stream,
    entry_fields,
    stream_events,
    wait_for,
    wait_for_stream_entries,
)

pytestmark = pytest.mark.e2e


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


#: (what it is, the message): each must become an event that passes the contract, except
#: the one without a sender, which must become a dead letter with its reason.
MESSAGES = [
    (
        "ordinary",
        wire(
            "From: Alice <alice@example.com>\nTo: support@example.com\nSubject: Printer\n"
            "Date: Tue, 02 Jan 2024 10:00:00 +0100\nMessage-ID: <c-1@example.com>\n\nJammed.\n"
        ),
    ),
    (
        "recipient-the-consumer-refuses",
        wire(
            "From: bob@example.com\nTo: x@localhost, Desk <desk@example.com>\n"
            "Cc: root@[127.0.0.1]\nSubject: Two of three recipients do not fit\n"
            "Message-ID: <c-2@example.com>\n\nHello\n"
        ),
    ),
    (
        "no-date-no-id-no-reply",
        wire("From: carol@example.com\nTo: support@example.com\n\nNo date, no id.\n"),
    ),
    (
        "unicode-domain-and-sender-fallback",
        wire(
            "From: Local <admin@localhost>\nReply-To: Jörg <joerg@müller.example>\n"
            "To: support@example.com\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n\nHallo\n"
        ),
    ),
    (
        "no-usable-sender",
        wire("From: demo@localhost\nTo: support@example.com\nSubject: Who?\n\nNobody.\n"),
    ),
    (
        "empty-attachment",
        wire(
            "From: dave@example.com\nTo: support@example.com\nSubject: Empty file\n"
            'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B"\n\n'
            "--B\nContent-Type: text/plain\n\nSee the file.\n"
            '--B\nContent-Type: text/plain\nContent-Disposition: attachment; filename="e.txt"\n'
            "\n\n--B--\n"
        ),
    ),
]


def test_every_event_passes_the_consumers_contract(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    redis_client: redis.Redis[bytes],
    stream: str,
    tmp_path: Path,
) -> None:
    add_dovecot_provider(environ, dovecot, mail_user)
    worker = WorkerProcess(environ, tmp_path / "worker.log")
    try:
        wait_for(lambda: worker.get("/ready")[0] == 200, timeout_s=20, what="worker ready")
        # The first one makes the folder's cursor; all after it are caught up, however many.
        dovecot.deliver(mail_user.name, MESSAGES[0][1])
        wait_for_stream_entries(redis_client, stream, 1)
        for _name, raw in MESSAGES[1:]:
            dovecot.deliver(mail_user.name, raw)
        events = wait_for_stream_entries(redis_client, stream, len(MESSAGES) - 1, timeout_s=30)
        dead = wait_for_stream_entries(redis_client, dead_letter_stream(stream), 1, timeout_s=10)
    finally:
        worker.terminate()

    assert len(events) == len(MESSAGES) - 1
    for event in events:
        assert check_entry(entry_fields(event)) is None, event["payload"]["emailData"]["subject"]
    by_subject = {e["payload"]["emailData"]["subject"]: e["payload"]["emailData"] for e in events}

    refused = by_subject["Two of three recipients do not fit"]
    assert refused["to"] == [{"email": "desk@example.com", "name": "Desk"}]
    assert refused["cc"] == []
    assert "x@localhost" in refused["headers"]["To"]
    assert "root@[127.0.0.1]" in refused["headers"]["Cc"]

    undated = by_subject[""]
    assert undated["receivedAt"] == undated["imap"]["internalDate"]
    assert "inReplyTo" not in undated
    assert undated["id"].startswith("imap-hash-")

    fallback = by_subject["Grüße"]
    assert fallback["from"] == {"email": "joerg@xn--mller-kva.example", "name": "Jörg"}
    assert fallback["fromHeader"] == "Reply-To"

    empty = by_subject["Empty file"]
    assert empty["attachments"] == []
    assert [s["reason"] for s in empty["ingressTruncations"]] == ["attachment_empty"]

    assert len(dead) == 1
    assert dead[0]["reason"] == "no_usable_sender"
    assert dead[0]["producer"] == DEAD_LETTER_PRODUCER
    # Nothing of ours went to the consumer's own dead-letter stream.
    assert redis_client.exists(f"{stream}:dlq") == 0


def test_dlq_commands_never_touch_the_consumers_dead_letters(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    redis_client: redis.Redis[bytes],
    stream: str,
    tmp_path: Path,
) -> None:
    consumers = f"{stream}:dlq"
    theirs = redis_client.xadd(consumers, CONSUMER_DEAD_LETTER).decode()  # type: ignore[arg-type]
    provider_id = add_dovecot_provider(environ, dovecot, mail_user)
    worker = WorkerProcess(environ, tmp_path / "worker.log")
    try:
        wait_for(lambda: worker.get("/ready")[0] == 200, timeout_s=20, what="worker ready")
        dovecot.deliver(mail_user.name, MESSAGES[0][1])
        wait_for_stream_entries(redis_client, stream, 1)
        dovecot.deliver(mail_user.name, MESSAGES[4][1])  # no usable sender: a dead letter
        ours = wait_for_stream_entries(redis_client, dead_letter_stream(stream), 1)[0]["id"]
    finally:
        worker.terminate()
    # An entry of the consumer's in our stream too (a stream shared by mistake).
    stray = redis_client.xadd(dead_letter_stream(stream), CONSUMER_DEAD_LETTER).decode()  # type: ignore[arg-type]

    listed = cli("dlq", "list", env=environ).stdout
    assert ours in listed and stray not in listed and theirs not in listed
    assert "not a dead letter" not in cli("dlq", "show", ours, env=environ).stdout
    assert cli("dlq", "show", stray, env=environ).returncode == 1
    assert cli("dlq", "delete", stray, env=environ).returncode == 1
    assert cli("dlq", "replay", stray, env=environ).returncode == 1
    cli("dlq", "replay", "--all", env=environ)
    moved = cli("dlq", "move", env=environ)
    assert moved.returncode == 0 and "moved 0" in moved.stdout

    def fields_of(stream_name: str, entry_id: str) -> dict[str, str] | None:
        found = redis_client.xrange(stream_name, entry_id, entry_id)
        return {k.decode(): v.decode() for k, v in found[0][1].items()} if found else None

    assert fields_of(consumers, theirs) == CONSUMER_DEAD_LETTER
    assert fields_of(dead_letter_stream(stream), stray) == CONSUMER_DEAD_LETTER
    assert redis_client.xlen(consumers) == 1
    stats = redis_client.hgetall(provider_stats_key(TENANT_A, provider_id))
    assert stats.get(b"dead_letters:INBOX") == b"1"  # ours, counted once; theirs never


def test_dlq_move_takes_our_old_entries_out_of_the_consumers_stream(
    environ: dict[str, str], redis_client: redis.Redis[bytes], stream: str
) -> None:
    consumers = f"{stream}:dlq"
    theirs = redis_client.xadd(consumers, CONSUMER_DEAD_LETTER).decode()  # type: ignore[arg-type]
    old_ours = {  # a dead letter of ours as versions before the producer mark wrote it
        "event_id": "1c831564-e1b4-596b-894f-aed42b9b14b6",
        "tenant": TENANT_A,
        "providerId": "p-1",
        "providerType": "imap",
        "folder": "INBOX",
        "uid": "4",
        "uidValidity": "7",
        "reason": "unparseable",
        "detail": "no header fields",
        "timestamp": "2026-01-01T00:00:00Z",
        "rawRefetch": "uid",
    }
    redis_client.xadd(consumers, old_ours)  # type: ignore[arg-type]

    moved = cli("dlq", "move", env=environ)

    assert moved.returncode == 0 and "moved 1" in moved.stdout, moved.stdout + moved.stderr
    remaining = stream_events(redis_client, consumers)
    assert [e["id"] for e in remaining] == [theirs]
    ours = stream_events(redis_client, dead_letter_stream(stream))
    assert len(ours) == 1 and ours[0]["producer"] == DEAD_LETTER_PRODUCER
    assert ours[0]["uid"] == "4"
    assert "4" in cli("dlq", "list", env=environ).stdout
