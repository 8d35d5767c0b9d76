import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from email_service.model import FolderKey
from email_service.publish.events import (
    MAX_DEAD_LETTER_RAW_BYTES,
    MAX_DETAIL_CHARS,
    DeadLetter,
    RawMessage,
    build_dead_letter_fields,
    build_event_fields,
    choose_execution_id,
    event_id_for,
    is_our_dead_letter,
)
from tests.helpers import CONSUMER_DEAD_LETTER, TENANT_A, TENANT_B

KEY = FolderKey(TENANT_A, "prov-1", "INBOX")
CONTRACT_FIELDS = {
    "event_id",
    "execution_id",
    "event_name",
    "event_type",
    "tenant",
    "timestamp",
    "user_id",
    "from_state",
    "to_state",
    "payload_json",
}


def test_event_id_is_uuid5_of_the_documented_name() -> None:
    expected = uuid.uuid5(uuid.NAMESPACE_URL, f"{TENANT_A}/prov-1/INBOX/77/12")
    assert event_id_for(KEY, 77, 12) == str(expected)


@pytest.mark.parametrize(
    ("other_key", "uid_validity", "uid"),
    [
        (KEY, 77, 13),
        (KEY, 78, 12),
        (FolderKey(TENANT_B, "prov-1", "INBOX"), 77, 12),
        (FolderKey(TENANT_A, "prov-1", "Support"), 77, 12),
    ],
    ids=["other-uid", "other-uidvalidity", "other-tenant", "other-folder"],
)
def test_event_id_differs_for_any_other_message(
    other_key: FolderKey, uid_validity: int, uid: int
) -> None:
    assert event_id_for(other_key, uid_validity, uid) != event_id_for(KEY, 77, 12)


def test_event_fields_follow_the_contract() -> None:
    fields = build_event_fields(
        email_data={"id": "<a@b>", "subject": "Grüße"},
        key=KEY,
        event_id="e-1",
        published_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        execution_id="x-1",
    )
    assert set(fields) == CONTRACT_FIELDS
    assert all(isinstance(v, str) for v in fields.values())
    assert fields["event_name"] == fields["event_type"] == "INBOUND_EMAIL_RECEIVED"
    assert fields["timestamp"] == "2026-01-02T03:04:05.000Z"
    assert fields["user_id"] == fields["from_state"] == fields["to_state"] == ""
    payload = json.loads(fields["payload_json"])
    assert payload == {
        "tenantId": TENANT_A,
        "tenant": TENANT_A,
        "providerId": "prov-1",
        "occurredAt": "2026-01-02T03:04:05.000Z",
        "emailData": {"id": "<a@b>", "subject": "Grüße"},
    }


@pytest.mark.parametrize(
    ("by_tenant", "expected"),
    [(True, TENANT_A), (False, str(uuid.UUID(int=5)))],
    ids=["by-tenant", "random"],
)
def test_execution_id(by_tenant: bool, expected: str) -> None:
    assert choose_execution_id(KEY, by_tenant=by_tenant, random_uuid=uuid.UUID(int=5)) == expected


@pytest.mark.parametrize(
    ("raw", "max_raw_bytes", "has_raw"),
    [
        (b"x" * 10, MAX_DEAD_LETTER_RAW_BYTES, True),
        (b"x" * (MAX_DEAD_LETTER_RAW_BYTES + 1), MAX_DEAD_LETTER_RAW_BYTES, False),
        (b"x" * 10, 9, False),
        (None, MAX_DEAD_LETTER_RAW_BYTES, False),
    ],
    ids=["small-raw-kept", "large-raw-refetched", "setting-lowers-the-bound", "no-raw"],
)
def test_dead_letter_fields(raw: bytes | None, max_raw_bytes: int, has_raw: bool) -> None:
    fields = build_dead_letter_fields(
        key=KEY,
        provider_type="google",
        uid_validity=5,
        uid=9,
        reason="unparseable",
        detail="boom" * 1000,
        message=RawMessage(raw=raw, internal_date=datetime(2026, 1, 1, 8, tzinfo=UTC)),
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
        max_raw_bytes=max_raw_bytes,
    )
    assert all(isinstance(value, str) for value in fields.values())
    assert fields["event_id"] == event_id_for(KEY, 5, 9)
    assert (fields["uid"], fields["uidValidity"], fields["reason"]) == ("9", "5", "unparseable")
    assert (fields["tenant"], fields["providerId"], fields["folder"]) == (
        TENANT_A,
        "prov-1",
        "INBOX",
    )
    assert fields["providerType"] == "google"
    assert len(fields["detail"]) == MAX_DETAIL_CHARS
    assert fields["rawSize"] == ("" if raw is None else str(len(raw)))
    assert ("rawBase64" in fields) is has_raw
    if has_raw:
        assert base64.b64decode(fields["rawBase64"]) == raw
    else:
        assert fields["rawRefetch"] == "uid"


def test_dead_letter_reads_back_what_was_written() -> None:
    message = RawMessage(
        raw=b"Subject: x\r\n\r\nbody",
        size=123,
        internal_date=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        flags=("\\Seen", "$label"),
        gmail_msgid=1234567890123,
    )
    fields = build_dead_letter_fields(
        key=KEY,
        provider_type="imap",
        uid_validity=5,
        uid=9,
        reason="unfetchable",
        detail="gone",
        message=message,
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )

    dead = DeadLetter.from_fields("1-0", fields)

    assert dead == DeadLetter(
        entry_id="1-0",
        event_id=event_id_for(KEY, 5, 9),
        key=KEY,
        provider_type="imap",
        uid=9,
        uid_validity=5,
        reason="unfetchable",
        detail="gone",
        failed_at="2026-01-01T00:00:00.000Z",
        message=message,
    )


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"producer": "email-service", "event_id": "e"}, id="no-tenant"),
        pytest.param(
            {
                "producer": "email-service",
                "tenant": "t",
                "providerId": "p",
                "folder": "f",
                "uid": "x",
                "uidValidity": "1",
            },
            id="uid-not-a-number",
        ),
        pytest.param(
            {
                "producer": "email-service",
                "tenant": "t",
                "providerId": "p",
                "folder": "f",
                "uid": "1",
                "uidValidity": "1",
                "rawBase64": "***",
            },
            id="raw-not-base64",
        ),
    ],
)
def test_not_a_dead_letter_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not a dead"):
        DeadLetter.from_fields("1-0", fields)


#: Our layout before the producer mark was added.
LEGACY_DEAD_LETTER = {
    "event_id": "e",
    "tenant": TENANT_A,
    "providerId": "p",
    "folder": "INBOX",
    "uid": "1",
    "uidValidity": "1",
    "reason": "unparseable",
}


@pytest.mark.parametrize(
    ("fields", "ours"),
    [
        pytest.param(CONSUMER_DEAD_LETTER, False, id="consumers"),
        pytest.param({**LEGACY_DEAD_LETTER, **CONSUMER_DEAD_LETTER}, False, id="consumer-fields"),
        pytest.param(
            {**LEGACY_DEAD_LETTER, "producer": "someone-else"}, False, id="other-producer"
        ),
        pytest.param(LEGACY_DEAD_LETTER, True, id="ours-before-the-mark"),
        pytest.param({"producer": "email-service"}, True, id="marked"),
        pytest.param({"event_id": "e", "tenant": TENANT_A}, False, id="partial-layout"),
    ],
)
def test_only_our_dead_letters_are_ours(fields: dict[str, str], ours: bool) -> None:
    assert is_our_dead_letter(fields) is ours


def test_a_consumers_dead_letter_is_never_read_as_ours() -> None:
    with pytest.raises(ValueError, match="not a dead letter of email-service"):
        DeadLetter.from_fields("1-0", CONSUMER_DEAD_LETTER)


def test_dead_letters_carry_the_producer_mark() -> None:
    fields = build_dead_letter_fields(
        key=KEY,
        provider_type="imap",
        uid_validity=5,
        uid=9,
        reason="unparseable",
        detail="",
        message=RawMessage(),
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )

    assert fields["producer"] == "email-service"
    assert is_our_dead_letter(fields)
