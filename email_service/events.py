"""The ``INBOUND_EMAIL_RECEIVED`` event and dead-letter entries as stream fields (core).

The field set is the product's event-bus contract (DESIGN.md section 3); keep it.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from email_service.model import FolderKey

EVENT_NAME = "INBOUND_EMAIL_RECEIVED"
#: uuid5 namespace of event ids: the standard URL namespace, so any consumer can recompute
#: an id as uuid5(NAMESPACE_URL, "tenant/provider/folder/uidvalidity/uid").
EVENT_ID_NAMESPACE = uuid.NAMESPACE_URL
#: Raw messages up to this size are kept inside a dead-letter entry for replay; larger ones
#: are fetched again from the server by UID when replayed.
MAX_DEAD_LETTER_RAW_BYTES = 256 * 1024


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


def build_dead_letter_fields(
    *,
    key: FolderKey,
    uid_validity: int,
    uid: int,
    reason: str,
    detail: str,
    raw: bytes | None,
    failed_at: datetime,
) -> dict[str, str]:
    """Fields of a dead-letter entry: what failed, where, and the raw message if small."""
    fields = {
        "event_id": event_id_for(key, uid_validity, uid),
        "tenant": key.tenant,
        "providerId": key.provider_id,
        "folder": key.folder,
        "uid": str(uid),
        "uidValidity": str(uid_validity),
        "reason": reason,
        "detail": detail[:2000],
        "timestamp": _iso_utc(failed_at),
        "rawSize": str(len(raw)) if raw is not None else "",
    }
    if raw is not None and len(raw) <= MAX_DEAD_LETTER_RAW_BYTES:
        fields["rawBase64"] = base64.b64encode(raw).decode("ascii")
    else:
        fields["rawRefetch"] = "uid"
    return fields


def _iso_utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
