"""The consumer's contract as code (DESIGN.md section 3): each rule, with an entry that
breaks it; the e-mail and UUID formats; and the schema read by a second, independent
validator (jsonschema), so it says the same to anyone who uses the file."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from email_service.contract.check import check_entry, check_value, load_schema
from email_service.contract.formats import fits_consumer_email, is_contract_uuid, iso_utc
from email_service.ingest.addresses import normalise_address
from tests.helpers import RANDOM_UUID, TENANT_A

EMAIL_DATA: dict[str, Any] = {
    "id": "<a-1@example.com>",
    "subject": "Printer jammed",
    "from": {"email": "alice@example.com", "name": "Alice"},
    "to": [{"email": "support@example.com"}],
    "cc": [{"email": "bob@example.com", "name": "Bob"}],
    "body": {"text": "It is jammed.", "html": "<p>It is jammed.</p>"},
    "receivedAt": "2026-01-02T03:04:05.000Z",
    "attachments": [
        {
            "id": "2",
            "name": "scan.pdf",
            "contentType": "application/pdf",
            "size": 3,
            "contentId": "<c1@example.com>",
            "isInline": False,
            "content": "YWJj",
        }
    ],
    "threadId": "<root@example.com>",
    "inReplyTo": "<root@example.com>",
    "references": ["<root@example.com>"],
    "rawMimeBase64": "RnJvbTogYQ0K",
    "ingressSkipReasons": [
        {
            "type": "attachment",
            "reason": "attachment_over_max_bytes",
            "attachmentId": "3",
            "attachmentName": "big.bin",
            "size": 20_000_000,
            "cap": 10_485_760,
        },
        {"type": "raw_mime", "reason": "raw_mime_over_max_bytes", "size": 9, "cap": 5},
    ],
    "provider": "imap",
    "providerId": "p-1",
    "tenant": TENANT_A,
    "fromHeader": "From",
    "headers": {"Subject": "Printer jammed"},
    "imap": {
        "folder": "INBOX",
        "uid": 12,
        "uidValidity": 7,
        "internalDate": "2026-01-02T03:04:00.000Z",
        "size": 1234,
        "flags": ["\\Seen"],
    },
    "charsetIssues": [{"part": "1", "declared": "x", "decodedAs": "utf-8", "issue": "i"}],
    "ingressTruncations": [{"type": "body", "reason": "body_text_over_max_bytes", "size": 9}],
}
PAYLOAD: dict[str, Any] = {
    "tenantId": TENANT_A,
    "tenant": TENANT_A,
    "providerId": "p-1",
    "occurredAt": "2026-01-02T03:04:06.000Z",
    "emailData": EMAIL_DATA,
}
FIELDS: dict[str, str] = {
    "event_id": "1c831564-e1b4-596b-894f-aed42b9b14b6",
    "execution_id": RANDOM_UUID,
    "event_name": "INBOUND_EMAIL_RECEIVED",
    "event_type": "INBOUND_EMAIL_RECEIVED",
    "tenant": TENANT_A,
    "timestamp": "2026-01-02T03:04:06.000Z",
    "user_id": "",
    "from_state": "",
    "to_state": "",
}

Change = Callable[[dict[str, str], dict[str, Any]], None]


def entry(change: Change | None = None) -> dict[str, str]:
    """The good entry, with ``change`` applied to its fields and payload."""
    fields, payload = dict(FIELDS), copy.deepcopy(PAYLOAD)
    if change is not None:
        change(fields, payload)
    if "payload_json" not in fields:
        fields["payload_json"] = json.dumps(payload, ensure_ascii=False)
    return fields


def field(name: str, value: Any) -> Change:
    def change(fields: dict[str, str], payload: dict[str, Any]) -> None:
        if value is DROP:
            del fields[name]
        else:
            fields[name] = value

    return change


def at(path: str, value: Any) -> Change:
    """Set (or with ``DROP`` remove) ``payload`` at a dotted path ("emailData.to.0.email")."""

    def change(fields: dict[str, str], payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = payload
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if value is DROP:
            del target[key]
        else:
            target[key] = value

    return change


DROP = object()

#: One entry per rule of DESIGN.md section 3 (and the two rules beyond JSON Schema), each
#: breaking exactly that rule: (id, change, the path the check must name).
BROKEN: list[tuple[str, Change, str]] = [
    ("event-id-missing", field("event_id", DROP), "entry"),
    ("event-id-not-a-uuid", field("event_id", "imap-1"), "entry.event_id"),
    ("event-id-version-0", field("event_id", "00000000-0000-0000-0000-000000000001"), "entry"),
    ("execution-id-not-a-uuid", field("execution_id", TENANT_A[:-1]), "entry.execution_id"),
    ("event-name-other", field("event_name", "EMAIL"), "entry.event_name"),
    ("event-type-missing", field("event_type", DROP), "entry"),
    ("tenant-missing", field("tenant", DROP), "entry"),
    ("timestamp-offset", field("timestamp", "2026-01-02T03:04:06+00:00"), "entry.timestamp"),
    ("timestamp-no-zone", field("timestamp", "2026-01-02T03:04:06"), "entry.timestamp"),
    ("timestamp-month-13", field("timestamp", "2026-13-02T03:04:06Z"), "entry.timestamp"),
    ("timestamp-line-feed", field("timestamp", "2026-01-02T03:04:06Z\n"), "entry.timestamp"),
    ("user-id-not-a-uuid", field("user_id", "user-1"), "entry.user_id"),
    ("from-state-missing", field("from_state", DROP), "entry"),
    ("payload-not-json", field("payload_json", "{"), "entry.payload_json"),
    ("payload-not-an-object", field("payload_json", "[]"), "payload"),
    ("lone-surrogate", field("to_state", "\ud800"), "entry.to_state"),
    ("tenant-id-not-a-uuid", at("tenantId", "acme"), "payload.tenantId"),
    ("tenant-id-not-the-entrys", at("tenantId", RANDOM_UUID), "payload.tenantId"),
    ("provider-id-missing", at("providerId", DROP), "payload"),
    ("provider-id-a-number", at("providerId", 7), "payload.providerId"),
    ("occurred-at-missing", at("occurredAt", DROP), "payload"),
    ("occurred-at-offset", at("occurredAt", "2026-01-02T03:04:06+00:00"), "payload.occurredAt"),
    ("payload-null-key", at("extra", None), "payload.extra"),
    ("email-data-missing", at("emailData", DROP), "payload"),
    ("id-missing", at("emailData.id", DROP), "payload.emailData"),
    ("id-null", at("emailData.id", None), "payload.emailData.id"),
    ("subject-missing", at("emailData.subject", DROP), "payload.emailData"),
    ("subject-null", at("emailData.subject", None), "payload.emailData.subject"),
    ("from-missing", at("emailData.from", DROP), "payload.emailData"),
    ("from-email-empty", at("emailData.from.email", ""), "payload.emailData.from.email"),
    ("from-localhost", at("emailData.from.email", "demo@localhost"), "payload.emailData.from"),
    ("from-ip-literal", at("emailData.from.email", "a@[127.0.0.1]"), "payload.emailData.from"),
    ("from-quoted", at("emailData.from.email", '"a b"@example.com'), "payload.emailData.from"),
    ("from-non-ascii", at("emailData.from.email", "jörg@example.de"), "payload.emailData.from"),
    ("from-unicode-domain", at("emailData.from.email", "j@münchen.de"), "payload.emailData.from"),
    ("from-name-null", at("emailData.from.name", None), "payload.emailData.from.name"),
    ("from-extra-key", at("emailData.from.address", "x"), "payload.emailData.from"),
    ("to-missing", at("emailData.to", DROP), "payload.emailData"),
    ("to-not-a-list", at("emailData.to", "a@example.com"), "payload.emailData.to"),
    ("to-bad-email", at("emailData.to.0.email", "x@localhost"), "payload.emailData.to[0]"),
    ("cc-bad-email", at("emailData.cc.0.email", "bob"), "payload.emailData.cc[0]"),
    ("body-missing", at("emailData.body", DROP), "payload.emailData"),
    ("body-text-missing", at("emailData.body.text", DROP), "payload.emailData.body"),
    ("body-text-null", at("emailData.body.text", None), "payload.emailData.body.text"),
    ("body-html-null", at("emailData.body.html", None), "payload.emailData.body.html"),
    ("received-at-missing", at("emailData.receivedAt", DROP), "payload.emailData"),
    ("received-at-null", at("emailData.receivedAt", None), "payload.emailData.receivedAt"),
    ("received-at-offset", at("emailData.receivedAt", "2026-01-02T03:04:05.000+01:00"), "payload"),
    ("attachment-size-0", at("emailData.attachments.0.size", 0), "payload.emailData.attachments"),
    ("attachment-size-half", at("emailData.attachments.0.size", 1.5), "payload.emailData"),
    ("attachment-size-text", at("emailData.attachments.0.size", "3"), "payload.emailData"),
    ("attachment-no-name", at("emailData.attachments.0.name", DROP), "payload.emailData"),
    ("attachment-content-id-null", at("emailData.attachments.0.contentId", None), "payload"),
    ("attachment-inline-text", at("emailData.attachments.0.isInline", "no"), "payload"),
    ("attachment-content-not-b64", at("emailData.attachments.0.content", "a b"), "payload"),
    ("thread-id-null", at("emailData.threadId", None), "payload.emailData.threadId"),
    ("in-reply-to-null", at("emailData.inReplyTo", None), "payload.emailData.inReplyTo"),
    ("references-not-strings", at("emailData.references.0", None), "payload.emailData"),
    ("raw-mime-not-b64", at("emailData.rawMimeBase64", "*"), "payload.emailData.rawMimeBase64"),
    ("skip-type-body", at("emailData.ingressSkipReasons.0.type", "body"), "payload.emailData"),
    ("skip-reason-ours", at("emailData.ingressSkipReasons.0.reason", "body_x"), "payload"),
    ("skip-size-negative", at("emailData.ingressSkipReasons.0.size", -1), "payload.emailData"),
    ("skip-cap-0", at("emailData.ingressSkipReasons.0.cap", 0), "payload.emailData"),
    ("skip-size-missing", at("emailData.ingressSkipReasons.0.size", DROP), "payload.emailData"),
    ("skip-extra-key", at("emailData.ingressSkipReasons.0.field", "x"), "payload.emailData"),
    (
        "skip-raw-mime-with-attachment-reason",
        at("emailData.ingressSkipReasons.1.reason", "attachment_over_max_bytes"),
        "payload.emailData",
    ),
    ("email-data-null-key", at("emailData.extra", None), "payload.emailData.extra"),
    ("imap-internal-date-null", at("emailData.imap.internalDate", None), "payload.emailData.imap"),
    ("headers-null-value", at("emailData.headers.Subject", None), "payload.emailData.headers"),
]


def test_the_good_entry_passes() -> None:
    assert check_entry(entry()) is None


@pytest.mark.parametrize(("change", "path"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_each_rule_refuses_an_entry_that_breaks_it(change: Change, path: str) -> None:
    violation = check_entry(entry(change))

    assert violation is not None
    assert violation.path.startswith(path), violation


def test_optional_fields_may_be_left_out() -> None:
    def minimal(fields: dict[str, str], payload: dict[str, Any]) -> None:
        data = payload["emailData"]
        for key in list(data):
            if key not in ("id", "subject", "from", "to", "body", "receivedAt"):
                del data[key]
        del data["from"]["name"], data["body"]["html"]
        del payload["tenant"]
        fields["execution_id"] = ""

    assert check_entry(entry(minimal)) is None


def test_violations_never_carry_the_failing_value() -> None:
    violation = check_entry(entry(at("emailData.from.email", "secret.person@localhost")))

    assert violation is not None
    assert "secret" not in violation.describe()
    assert violation.field == "payload.emailData.from.email"


def test_array_indices_are_left_out_of_the_metric_label() -> None:
    violation = check_entry(entry(at("emailData.to.0.email", "x@localhost")))

    assert violation is not None and violation.field == "payload.emailData.to[].email"


# --- the same schema, read by another validator ---

SCHEMA = load_schema()


def jsonschema_accepts(definition: str, value: Any) -> bool:
    root = {"$ref": f"#/definitions/{definition}", "definitions": SCHEMA["definitions"]}
    return jsonschema.Draft7Validator(root).is_valid(value)


def test_the_schema_is_valid_draft_7() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


#: Rules checked beyond JSON Schema (valid UTF-8, the entry's tenant is the payload's), and
#: the one entry that has no payload to read.
BEYOND_SCHEMA = {"lone-surrogate", "tenant-id-not-the-entrys", "payload-not-json"}


@pytest.mark.parametrize(
    "change",
    [b[1] for b in BROKEN if b[0] not in BEYOND_SCHEMA],
    ids=[b[0] for b in BROKEN if b[0] not in BEYOND_SCHEMA],
)
def test_jsonschema_refuses_every_broken_entry_too(change: Change) -> None:
    fields = entry(change)
    payload = json.loads(fields["payload_json"])

    assert not (jsonschema_accepts("entry", fields) and jsonschema_accepts("payload", payload))


def test_jsonschema_accepts_the_good_entry() -> None:
    fields = entry()
    assert jsonschema_accepts("entry", fields)
    assert jsonschema_accepts("payload", json.loads(fields["payload_json"]))


# --- formats ---

EMAILS = [
    ("alice@example.com", True),
    ("Alice.O'Neil+tag@Sub.Example.COM", True),
    ("a_b-c@x-y.example.co", True),
    ("o'@example.com", False),  # may not end in an apostrophe
    ("x@xn--mnchen-3ya.de", True),
    ("user@localhost", False),
    ("user@127.0.0.1", False),
    ("user@[127.0.0.1]", False),
    ('"quoted"@example.com', False),
    ("jörg@example.de", False),
    ("j@münchen.de", False),
    (".a@example.com", False),
    ("a.@example.com", False),
    ("a..b@example.com", False),
    ("a@-x.example.com", False),
    ("a@example.c", False),
    ("a@example.c0m", False),
    ("a@example.com\n", False),
    ("a@example.com ", False),
    ("@example.com", False),
    ("a@", False),
    ("\N{LATIN SMALL LETTER LONG S}@example.com", False),  # ASCII only, whatever folds to it
    ("", False),
]


@pytest.mark.parametrize(("address", "fits"), EMAILS, ids=[repr(a) for a, _ in EMAILS])
def test_the_email_format_and_both_validators_agree(address: str, fits: bool) -> None:
    assert fits_consumer_email(address) is fits
    assert (check_value("email", address) is None) is fits
    assert jsonschema_accepts("email", address) is fits


UUIDS = [
    (RANDOM_UUID, True),
    (TENANT_A.upper(), True),
    ("1c831564-e1b4-596b-894f-aed42b9b14b6", True),  # version 5
    ("00000000-0000-0000-0000-000000000000", True),
    ("00000000-0000-0000-0000-000000000005", False),  # version 0
    ("017f22e2-79b0-7cc3-98c4-dc0c0c07398f", False),  # version 7: the older validator refuses
    ("3d7e1c9a-2b4f-4a6e-cc1d-5f9b0e2a7c4d", False),  # not the RFC 4122 variant
    ("3d7e1c9a2b4f4a6e8c1d5f9b0e2a7c4d", False),
    ("acme", False),
    (RANDOM_UUID + "\n", False),
]


@pytest.mark.parametrize(("value", "valid"), UUIDS, ids=[repr(v) for v, _ in UUIDS])
def test_the_uuid_format_and_both_validators_agree(value: str, valid: bool) -> None:
    assert is_contract_uuid(value) is valid
    assert (check_value("uuid", value) is None) is valid
    assert jsonschema_accepts("uuid", value) is valid


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        (" alice@Example.COM. ", "alice@example.com"),
        ("j@münchen.de", "j@xn--mnchen-3ya.de"),
        ("j@faß.de", "j@xn--fa-hia.de"),  # IDNA 2008: not "fass.de"
        ('"john.doe"@example.com', "john.doe@example.com"),
        ('"john doe"@example.com', None),
        ("jörg@example.de", None),
        ("root@localhost", None),
        ("root@[10.0.0.1]", None),
        ("a@b@example.com", None),
        ("no-at-sign", None),
        ("x@" + "a" * 600 + ".com", None),
        ("x@exa_mple.com", None),
        ("x@пример.рф", None),  # its top-level label is xn--p1ai, not letters
    ],
)
def test_normalise_address(address: str, expected: str | None) -> None:
    assert normalise_address(address) == expected


def test_iso_utc_is_the_contracts_form() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    moment = datetime(2026, 1, 2, 4, 4, 5, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert iso_utc(moment) == "2026-01-02T03:04:05.123Z"
    assert check_value("dateTimeZ", iso_utc(datetime(1, 1, 1, tzinfo=UTC))) is None
