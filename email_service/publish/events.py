"""The ``INBOUND_EMAIL_RECEIVED`` event and dead-letter entries as stream fields (core).

The event's field set is the product's event-bus contract (DESIGN.md section 3; checked by
``contract.check``); keep it. Every date-time is ``contract.formats.iso_utc``'s ``Z`` form.

A dead-letter entry says what failed and where, and how to get the message back for
``email-service dlq replay``. It goes to a stream of ours (``EMAIL_SERVICE_DLQ_STREAM``,
default ``email-service:dead-letters``), never the consumer's ``<stream>:dlq``, and carries
``producer = email-service`` so that our tools touch only our entries even in a stream
shared by mistake. Its fields, all strings:

- ``producer`` (``DEAD_LETTER_PRODUCER``), ``event_id`` (the id the event will have),
  ``tenant``, ``providerId``, ``providerType``, ``folder``, ``uid``, ``uidValidity``;
- ``reason`` (one of ``DEAD_LETTER_REASONS``), ``detail`` (at most 2,000 characters; never a
  header value or body), ``timestamp`` (when it failed);
- ``rawSize`` (RFC822.SIZE; "" when unknown), ``rawSha256``, ``internalDate``, ``flags``
  (JSON list), ``gmailMsgId`` ("" when none);
- ``rawBase64``: the raw message, when it is at most ``EMAIL_SERVICE_DLQ_MAX_RAW_BYTES``;
  otherwise ``rawRefetch = "uid"``: replay fetches it again by UID (possible while the
  folder's UIDVALIDITY is unchanged).

So an entry is at most 4/3 of ``EMAIL_SERVICE_DLQ_MAX_RAW_BYTES`` plus about 3 KiB.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from email_service.contract.formats import iso_utc
from email_service.model import FolderKey

EVENT_NAME = "INBOUND_EMAIL_RECEIVED"
#: uuid5 namespace of event ids: the standard URL namespace, so any consumer can recompute
#: an id as uuid5(NAMESPACE_URL, "tenant/provider/folder/uidvalidity/uid").
EVENT_ID_NAMESPACE = uuid.NAMESPACE_URL
#: Raw messages up to this size are kept inside a dead-letter entry for replay (the default
#: of ``EMAIL_SERVICE_DLQ_MAX_RAW_BYTES``); larger ones are fetched again by UID.
MAX_DEAD_LETTER_RAW_BYTES = 256 * 1024
#: Longest ``detail`` of a dead letter: an error message fits; an entry stays small.
MAX_DETAIL_CHARS = 2000

#: Why a message became a dead letter (the ``reason`` field and the metric's label).
UNPARSEABLE = "unparseable"  #: the bytes are not a message, or the parser gave up on them
UNFETCHABLE = "unfetchable"  #: SEARCH listed the UID but FETCH never returned it
EVENT_BUILD_FAILED = "event_build_failed"  #: a bug of ours while building the event
EVENT_TOO_LARGE = "event_too_large"  #: above EMAIL_SERVICE_MAX_EVENT_BYTES even when shrunk
NO_USABLE_SENDER = "no_usable_sender"  #: no sender address fits the consumer's e-mail format
CONTRACT_VIOLATION = "contract_violation"  #: the event would break the consumer's contract
DEAD_LETTER_REASONS = (
    UNPARSEABLE,
    UNFETCHABLE,
    EVENT_BUILD_FAILED,
    EVENT_TOO_LARGE,
    NO_USABLE_SENDER,
    CONTRACT_VIOLATION,
)

#: ``producer`` field of our dead letters: what tells them from anyone else's entries.
DEAD_LETTER_PRODUCER = "email-service"
#: Fields of the consumer's own dead letters (DESIGN.md section 3): an entry with any of
#: them is never ours, whatever else it carries.
CONSUMER_DEAD_LETTER_FIELDS = frozenset(
    {"original_message", "error_message", "error_stack", "source_stream", "original_id", "moved_at"}
)
#: Fields every dead letter of ours has had, before ``producer`` was added too.
_DEAD_LETTER_LAYOUT = frozenset(
    {"event_id", "tenant", "providerId", "folder", "uid", "uidValidity", "reason"}
)


@dataclass(frozen=True)
class StreamEntry:
    """One entry for the event stream, or for the dead-letter stream.

    ``gmail_msgid`` (X-GM-MSGID) makes the publish add only the first copy of a Gmail
    message seen in any of the provider's label folders.
    """

    uid: int
    fields: Mapping[str, str]
    dead_letter: bool = False
    gmail_msgid: int | None = None
    #: ``ingressSkipReasons`` and ``ingressTruncations`` of the event, by reason (metrics).
    skip_reasons: tuple[str, ...] = ()
    #: For a ``contract_violation`` dead letter: the failing field (a metric label).
    violation: str | None = None


def event_id_for(key: FolderKey, uid_validity: int, uid: int) -> str:
    """The deterministic id of the event for one message."""
    name = f"{key.tenant}/{key.provider_id}/{key.folder}/{uid_validity}/{uid}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def build_event_fields(
    *,
    email_data: Mapping[str, Any],
    key: FolderKey,
    event_id: str,
    published_at: datetime,
    execution_id: str,
) -> dict[str, str]:
    """Flat string fields of one ``XADD``; ``execution_id`` is chosen by the caller.

    ``occurredAt`` (the newer domain schema requires it) and ``timestamp`` are both the time
    the event was made: when the service received the mail (``receivedAt`` is the sender's).
    """
    return {
        "event_id": event_id,
        "execution_id": execution_id,
        "event_name": EVENT_NAME,
        "event_type": EVENT_NAME,
        "tenant": key.tenant,
        "timestamp": iso_utc(published_at),
        "user_id": "",
        "from_state": "",
        "to_state": "",
        "payload_json": encode_json(build_payload(email_data, key, published_at)),
    }


def build_payload(
    email_data: Mapping[str, Any], key: FolderKey, published_at: datetime
) -> dict[str, Any]:
    """The object ``payload_json`` holds."""
    return {
        "tenantId": key.tenant,
        "tenant": key.tenant,
        "providerId": key.provider_id,
        "occurredAt": iso_utc(published_at),
        "emailData": email_data,
    }


def encode_json(value: Any) -> str:
    """Compact JSON, UTF-8 as is; NaN and infinities refused (they are not JSON)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def choose_execution_id(key: FolderKey, *, by_tenant: bool, random_uuid: uuid.UUID) -> str:
    """The tenant id when events are channelled by tenant, else a new UUID."""
    return key.tenant if by_tenant else str(random_uuid)


@dataclass(frozen=True)
class RawMessage:
    """What the mailbox said about a dead letter's message, as far as it was fetched."""

    raw: bytes | None = None
    size: int | None = None
    internal_date: datetime | None = None
    flags: tuple[str, ...] = ()
    gmail_msgid: int | None = None


def build_dead_letter_fields(
    *,
    key: FolderKey,
    provider_type: str,
    uid_validity: int,
    uid: int,
    reason: str,
    detail: str,
    message: RawMessage,
    failed_at: datetime,
    max_raw_bytes: int = MAX_DEAD_LETTER_RAW_BYTES,
) -> dict[str, str]:
    """Fields of a dead-letter entry: what failed, where, and the raw message if small."""
    raw = message.raw
    size = message.size if message.size is not None else len(raw) if raw is not None else None
    fields = {
        "producer": DEAD_LETTER_PRODUCER,
        "event_id": event_id_for(key, uid_validity, uid),
        "tenant": key.tenant,
        "providerId": key.provider_id,
        "providerType": provider_type,
        "folder": key.folder,
        "uid": str(uid),
        "uidValidity": str(uid_validity),
        "reason": reason,
        "detail": detail[:MAX_DETAIL_CHARS],
        "timestamp": iso_utc(failed_at),
        "rawSize": "" if size is None else str(size),
        "rawSha256": hashlib.sha256(raw).hexdigest() if raw is not None else "",
        "internalDate": _iso_or_empty(message.internal_date),
        "flags": json.dumps(list(message.flags), ensure_ascii=False),
        "gmailMsgId": "" if message.gmail_msgid is None else str(message.gmail_msgid),
    }
    if raw is not None and len(raw) <= max_raw_bytes:
        fields["rawBase64"] = base64.b64encode(raw).decode("ascii")
    else:
        fields["rawRefetch"] = "uid"
    return fields


@dataclass(frozen=True)
class DeadLetter:
    """A dead-letter entry read back from the stream (``entry_id`` is its stream id)."""

    entry_id: str
    event_id: str
    key: FolderKey
    provider_type: str
    uid: int
    uid_validity: int
    reason: str
    detail: str
    failed_at: str
    message: RawMessage

    @classmethod
    def from_fields(cls, entry_id: str, fields: Mapping[str, str]) -> DeadLetter:
        """Raises ``ValueError`` when the entry is not a dead letter of ours."""
        if not is_our_dead_letter(fields):
            raise ValueError(f"{entry_id} is not a dead letter of email-service")
        try:
            key = FolderKey(fields["tenant"], fields["providerId"], fields["folder"])
            uid, uid_validity = int(fields["uid"]), int(fields["uidValidity"])
            raw = _b64(fields["rawBase64"]) if "rawBase64" in fields else None
            flags = tuple(str(flag) for flag in json.loads(fields.get("flags") or "[]"))
            internal = fields.get("internalDate") or ""
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            raise ValueError(f"{entry_id} is not a dead-letter entry ({exc})") from exc
        return cls(
            entry_id=entry_id,
            event_id=fields.get("event_id") or event_id_for(key, uid_validity, uid),
            key=key,
            provider_type=fields.get("providerType") or "imap",
            uid=uid,
            uid_validity=uid_validity,
            reason=fields.get("reason", ""),
            detail=fields.get("detail", ""),
            failed_at=fields.get("timestamp", ""),
            message=RawMessage(
                raw=raw,
                size=_optional_int(fields.get("rawSize")),
                internal_date=_parse_iso(internal),
                flags=flags,
                gmail_msgid=_optional_int(fields.get("gmailMsgId")),
            ),
        )


def _iso_or_empty(moment: datetime | None) -> str:
    """A dead letter records what it can: no date rather than no dead letter."""
    try:
        return iso_utc(moment) if moment is not None else ""
    except (OverflowError, ValueError):
        return ""


def is_our_dead_letter(fields: Mapping[str, str]) -> bool:
    """Whether an entry is a dead letter of ours: marked ``producer = email-service``, or (from
    before the mark) laid out as ours; never one with the consumer's dead-letter fields."""
    if CONSUMER_DEAD_LETTER_FIELDS & fields.keys():
        return False
    producer = fields.get("producer")
    if producer is not None:
        return producer == DEAD_LETTER_PRODUCER
    return fields.keys() >= _DEAD_LETTER_LAYOUT


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _optional_int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _parse_iso(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None
    return moment if moment is not None and moment.utcoffset() is not None else None
