import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from email_service.events import (
    MAX_DEAD_LETTER_RAW_BYTES,
    build_dead_letter_fields,
    build_event_fields,
    choose_execution_id,
    event_id_for,
)
from email_service.model import FolderKey

KEY = FolderKey("tenant-a", "prov-1", "INBOX")
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
    expected = uuid.uuid5(uuid.NAMESPACE_URL, "tenant-a/prov-1/INBOX/77/12")
    assert event_id_for(KEY, 77, 12) == str(expected)


@pytest.mark.parametrize(
    ("other_key", "uid_validity", "uid"),
    [
        (KEY, 77, 13),
        (KEY, 78, 12),
        (FolderKey("tenant-b", "prov-1", "INBOX"), 77, 12),
        (FolderKey("tenant-a", "prov-1", "Support"), 77, 12),
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
    assert fields["timestamp"] == "2026-01-02T03:04:05Z"
    assert fields["user_id"] == fields["from_state"] == fields["to_state"] == ""
    payload = json.loads(fields["payload_json"])
    assert payload == {
        "tenantId": "tenant-a",
        "tenant": "tenant-a",
        "providerId": "prov-1",
        "emailData": {"id": "<a@b>", "subject": "Grüße"},
    }


@pytest.mark.parametrize(
    ("by_tenant", "expected"),
    [(True, "tenant-a"), (False, str(uuid.UUID(int=5)))],
    ids=["by-tenant", "random"],
)
def test_execution_id(by_tenant: bool, expected: str) -> None:
    assert choose_execution_id(KEY, by_tenant=by_tenant, random_uuid=uuid.UUID(int=5)) == expected


@pytest.mark.parametrize(
    ("raw", "has_raw"),
    [(b"x" * 10, True), (b"x" * (MAX_DEAD_LETTER_RAW_BYTES + 1), False), (None, False)],
    ids=["small-raw-kept", "large-raw-refetched", "no-raw"],
)
def test_dead_letter_fields(raw: bytes | None, has_raw: bool) -> None:
    fields = build_dead_letter_fields(
        key=KEY,
        uid_validity=5,
        uid=9,
        reason="unparseable",
        detail="boom",
        raw=raw,
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert fields["event_id"] == event_id_for(KEY, 5, 9)
    assert (fields["uid"], fields["uidValidity"], fields["reason"]) == ("9", "5", "unparseable")
    assert ("rawBase64" in fields) is has_raw
    if has_raw:
        assert base64.b64decode(fields["rawBase64"]) == raw
    else:
        assert fields["rawRefetch"] == "uid"
