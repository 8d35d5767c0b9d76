"""``email-service dlq list | show | replay | delete`` as an operator runs them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import redis

from email_service.model import FolderKey
from email_service.publish.events import RawMessage, build_dead_letter_fields
from tests.e2e.processes import cli
from tests.helpers import dead_letter_stream, make_message, stream_events

pytestmark = pytest.mark.e2e

FAILED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add_dead_letter(
    client: redis.Redis[bytes], stream: str, key: FolderKey, uid: int, raw: bytes | None
) -> str:
    fields = build_dead_letter_fields(
        key=key,
        provider_type="imap",
        uid_validity=7,
        uid=uid,
        reason="unparseable",
        detail="message does not parse (RecursionError)",
        message=RawMessage(raw=raw, size=len(raw) if raw else 5_000_000),
        failed_at=FAILED_AT,
    )
    return client.xadd(dead_letter_stream(stream), fields).decode()  # type: ignore[arg-type]


def test_list_show_replay_and_delete(
    environ: dict[str, str], redis_client: redis.Redis[bytes], stream: str
) -> None:
    # Unique tenants: the replay guard of an event id outlives this test in the shared Redis.
    acme, other = str(uuid.uuid4()), str(uuid.uuid4())
    raw = make_message("Replayed after the parser was fixed", body="secret body text")
    stored = add_dead_letter(redis_client, stream, FolderKey(acme, "prov-1", "INBOX"), 4, raw)
    refetch = add_dead_letter(redis_client, stream, FolderKey(other, "prov-9", "Sales"), 8, None)

    listed = cli("dlq", "list", env=environ)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "TENANT", "PROVIDER", "FOLDER", "UID", "REASON", "TIME"]
    assert [row.split() for row in rows] == [
        [stored, acme, "prov-1", "INBOX", "4", "unparseable", "2026-03-01T12:00:00.000Z"],
        [refetch, other, "prov-9", "Sales", "8", "unparseable", "2026-03-01T12:00:00.000Z"],
    ]
    only_acme = cli("dlq", "list", "--tenant", acme, env=environ).stdout
    assert stored in only_acme and refetch not in only_acme
    assert refetch in cli("dlq", "list", "--provider", "prov-9", env=environ).stdout

    shown = cli("dlq", "show", stored, env=environ)
    assert shown.returncode == 0
    assert "reason:        unparseable" in shown.stdout
    assert "RecursionError" in shown.stdout and "stored (" in shown.stdout
    assert "secret body text" not in shown.stdout
    assert "secret body text" in cli("dlq", "show", stored, "--raw", env=environ).stdout
    assert "fetches it again by UID" in cli("dlq", "show", refetch, env=environ).stdout

    replayed = cli("dlq", "replay", stored, env=environ)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"{stored}: published as" in replayed.stdout
    again = cli("dlq", "replay", stored, env=environ)
    assert again.returncode == 1 and "no such dead letter" in again.stdout
    events = stream_events(redis_client, stream)
    assert [e["payload"]["emailData"]["subject"] for e in events] == [
        "Replayed after the parser was fixed"
    ]

    impossible = cli("dlq", "replay", "--all", "--tenant", other, env=environ)
    assert impossible.returncode == 1
    assert f"{refetch}: not replayed: no provider prov-9" in impossible.stdout
    assert "0 published, 0 already, 0 missing, 1 failed" in impossible.stdout
    assert "Traceback" not in impossible.stderr

    deleted = cli("dlq", "delete", refetch, env=environ)
    assert deleted.returncode == 0 and f"deleted {refetch}" in deleted.stdout
    assert cli("dlq", "list", env=environ).stdout.strip() == "no dead letters"
    assert cli("dlq", "show", "not-an-id", env=environ).returncode == 1
