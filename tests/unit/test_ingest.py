"""build_entry: every fetched message becomes its event or a dead letter that says why."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from email_service.imap.fetched import FetchedHeaders, FetchedMessage, MimePart
from email_service.ingest.entry import IngestTarget, build_entry, unfetchable_entry
from email_service.ingest.limits import entry_bytes
from email_service.model import FolderKey
from email_service.publish.events import event_id_for
from email_service.settings import IngressLimits
from tests.helpers import RANDOM_UUID, TENANT_A

KEY = FolderKey(TENANT_A, "prov-1", "INBOX")
NOW = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
INTERNAL = datetime(2026, 2, 3, 4, 0, tzinfo=UTC)
TARGET = IngestTarget(KEY, "google", 77, IngressLimits(), channel_by_tenant=True)

GOOD = (
    b"From: Alice <alice@example.com>\r\nTo: support@example.com\r\nSubject: Printer\r\n"
    b"Message-ID: <p-1@example.com>\r\n\r\nIt is jammed.\r\n"
)


def whole(raw: bytes, **changes: Any) -> FetchedMessage:
    fields: dict[str, Any] = {
        "uid": 12,
        "raw": raw,
        "internal_date": INTERNAL,
        "flags": ("\\Seen",),
        "size": len(raw),
        "gmail_msgid": 99,
    }
    return FetchedMessage(**{**fields, **changes})


def payload(fields: Any) -> dict[str, Any]:
    return json.loads(fields["payload_json"])["emailData"]  # type: ignore[no-any-return]


def build(fetched: Any, target: IngestTarget = TARGET) -> Any:
    return build_entry(fetched, target, now=NOW, random_uuid=uuid.UUID(RANDOM_UUID))


def test_a_message_becomes_its_event() -> None:
    entry = build(whole(GOOD))

    assert (entry.uid, entry.dead_letter, entry.gmail_msgid, entry.skip_reasons) == (
        12,
        False,
        99,
        (),
    )
    assert entry.fields["event_id"] == event_id_for(KEY, 77, 12)
    assert entry.fields["execution_id"] == TENANT_A
    assert entry.fields["timestamp"] == "2026-02-03T04:05:06.000Z"
    data = payload(entry.fields)
    assert (data["subject"], data["provider"], data["imap"]["uid"]) == ("Printer", "google", 12)
    assert data["body"] == {"text": "It is jammed.\n"}


@pytest.mark.parametrize(
    ("fetched", "reason", "detail"),
    [
        (whole(b"\x00\x01\x02 not mail"), "unparseable", "no header fields"),
        (whole(b""), "unparseable", "empty message"),
        (
            whole(GOOD, internal_date=datetime(2026, 1, 1)),  # naive: a bug of ours upstream
            "event_build_failed",
            "ValueError: internal_date must be timezone-aware",
        ),
        (
            whole(GOOD.replace(b"Subject: Printer", b"Subject: " + b"x" * 6000)),
            "event_too_large",
            "above EMAIL_SERVICE_MAX_EVENT_BYTES=4096",
        ),
    ],
    ids=["junk", "empty", "bug-of-ours", "too-large"],
)
def test_what_cannot_become_an_event_is_a_dead_letter_with_the_message(
    fetched: FetchedMessage, reason: str, detail: str
) -> None:
    small = IngestTarget(KEY, "imap", 77, IngressLimits(max_event_bytes=4096))

    entry = build(fetched, small)

    assert entry.dead_letter and entry.gmail_msgid == 99
    assert (entry.fields["reason"], entry.fields["uid"]) == (reason, "12")
    assert detail in entry.fields["detail"]
    assert base64.b64decode(entry.fields["rawBase64"]) == fetched.raw
    assert entry.fields["flags"] == '["\\\\Seen"]'


def test_a_large_dead_letter_is_refetched_not_stored() -> None:
    target = IngestTarget(KEY, "imap", 77, IngressLimits(dead_letter_raw_bytes=10))

    entry = build(whole(b"\x00" * 11), target)

    assert entry.fields["rawRefetch"] == "uid" and "rawBase64" not in entry.fields
    assert entry.fields["rawSize"] == "11"


def test_a_message_above_the_raw_cap_is_an_event_saying_so() -> None:
    header = b"From: a@example.com\r\nSubject: huge\r\n\r\n"
    fetched = FetchedHeaders(
        uid=12,
        header=header,
        structure=MimePart("1", "text/plain", (), None, "7bit", 40_000_000),
        internal_date=INTERNAL,
        flags=(),
        size=40_000_100,
        sections={"1": b"start of a long text"},
    )

    entry = build(fetched)

    data = payload(entry.fields)
    assert data["body"]["text"] == "start of a long text"
    assert data["id"].startswith("imap-hash-")  # of the header section, as that is all we have
    assert data["ingressSkipReasons"] == [
        {
            "type": "raw_mime",
            "reason": "raw_mime_over_max_bytes",
            "size": 40_000_100,
            "cap": 25 * 1024 * 1024,
        }
    ]
    assert entry.skip_reasons == ("raw_mime_over_max_bytes",)


def test_every_entry_fits_the_bound() -> None:
    target = IngestTarget(KEY, "imap", 77, IngressLimits(max_event_bytes=8192))
    raw = GOOD.replace(b"It is jammed.", "Grüße ".encode() * 5000)

    entry = build(whole(raw), target)

    assert not entry.dead_letter
    assert entry_bytes(entry.fields) <= 8192
    assert "event_over_max_bytes" in entry.skip_reasons


def test_unfetchable_entry() -> None:
    entry = unfetchable_entry(5, TARGET, "gone", now=NOW, size=123)

    assert entry.dead_letter and entry.uid == 5
    assert (entry.fields["reason"], entry.fields["detail"], entry.fields["rawSize"]) == (
        "unfetchable",
        "gone",
        "123",
    )
    assert entry.fields["rawRefetch"] == "uid"


def test_an_event_that_breaks_the_contract_is_a_dead_letter_naming_the_path() -> None:
    # A tenant id that is not a UUID: the consumer would drop the event, so it is not sent.
    target = IngestTarget(FolderKey("acme", "prov-1", "INBOX"), "imap", 77, IngressLimits())

    entry = build(whole(GOOD), target)

    assert entry.dead_letter
    assert entry.fields["reason"] == "contract_violation"
    assert "payload.tenantId" in entry.fields["detail"]
    assert entry.violation == "payload.tenantId"
    assert base64.b64decode(entry.fields["rawBase64"]) == GOOD  # kept for a replay


def test_a_message_without_a_usable_sender_is_a_dead_letter() -> None:
    entry = build(whole(GOOD.replace(b"alice@example.com", b"alice@localhost")))

    assert entry.dead_letter
    assert entry.fields["reason"] == "no_usable_sender"
    assert "Reply-To" in entry.fields["detail"]
