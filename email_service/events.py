"""The ``INBOUND_EMAIL_RECEIVED`` event and dead-letter entries as stream fields (core).

The event's field set is the product's event-bus contract (DESIGN.md section 3); keep it.

A dead-letter entry (``<stream>:dlq``) says what failed and where, and how to get the message
back for ``email-service dlq replay``. Its fields, all strings:

- ``event_id`` (the id the event will have), ``tenant``, ``providerId``, ``providerType``,
  ``folder``, ``uid``, ``uidValidity``;
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
DEAD_LETTER_REASONS = (UNPARSEABLE, UNFETCHABLE, EVENT_BUILD_FAILED, EVENT_TOO_LARGE)


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
    #: ``ingressSkipReasons`` of the event, by reason (for metrics).
    skip_reasons: tuple[str, ...] = ()


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
    """Flat string fields of one ``XADD``; ``execution_id`` is chosen by the caller."""
    payload = {
        "tenantId": key.tenant,
        "tenant": key.tenant,
        "providerId": key.provider_id,
        "emailData": email_data,
    }
    return {
        "event_id": event_id,
        "execution_id": execution_id,
        "event_name": EVENT_NAME,
        "event_type": EVENT_NAME,
        "tenant": key.tenant,
        "timestamp": _iso_utc(published_at),
        "user_id": "",
        "from_state": "",
        "to_state": "",
        "payload_json": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
    }


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
        "event_id": event_id_for(key, uid_validity, uid),
        "tenant": key.tenant,
        "providerId": key.provider_id,
        "providerType": provider_type,
        "folder": key.folder,
        "uid": str(uid),
        "uidValidity": str(uid_validity),
        "reason": reason,
        "detail": detail[:MAX_DETAIL_CHARS],
        "timestamp": _iso_utc(failed_at),
        "rawSize": "" if size is None else str(size),
        "rawSha256": hashlib.sha256(raw).hexdigest() if raw is not None else "",
        "internalDate": _iso_utc(message.internal_date) if message.internal_date else "",
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


def _iso_utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
