"""Which attachment bytes and whether the whole message go inline in the event (core).

``IMAP_INLINE_CONTENT`` chooses what may go inline: ``off`` (metadata only: names, types,
sizes), ``attachments`` (each listed attachment's decoded bytes as base64 ``content``) or
``all`` (attachments, and the whole message as ``rawMimeBase64``). What is listed at all is
decided before (``ingest.limits.cap_attachments``: count, per-attachment and total caps); here the
entry bound (``EMAIL_SERVICE_MAX_EVENT_BYTES``) is what bites: the event without content
costs ``base_entry_bytes``, and each inlined part costs its base64 length plus the JSON
around it. Attachments are taken in message order while they fit, then the raw message.

What does not fit is named in ``ingressSkipReasons`` with the consumer's own values
(DESIGN.md section 3): an attachment as ``attachment_total_bytes_exceeded`` (the entry's
room for content, in decoded bytes, is the ``cap``), the message as
``raw_mime_over_max_bytes`` (the smaller of ``IMAP_MAX_RAW_MIME_BYTES`` and that room).
Everything can still be fetched through the API (``contentLocation``, ``content_location``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from email_service.ingest.limits import MAX_SKIP_REASONS, SkipReason
from email_service.settings import IngressLimits

#: ``IMAP_INLINE_CONTENT`` values.
OFF = "off"
ATTACHMENTS = "attachments"
ALL = "all"
MODES = (OFF, ATTACHMENTS, ALL)

#: The API's path prefix (``api.openapi.API_PREFIX``; a unit test keeps them equal): the
#: event's ``contentLocation`` paths start with it.
API_PATH_PREFIX = "/api/v1"
#: JSON around one attachment's content (``,"content":""``), with room to spare.
CONTENT_KEY_BYTES = 16
#: JSON around the raw message (``,"rawMimeBase64":""``), with room to spare.
RAW_KEY_BYTES = 24


def base64_length(size: int) -> int:
    """Characters of the base64 (no line breaks) of ``size`` bytes."""
    return 4 * ((size + 2) // 3)


def decoded_room(chars: int) -> int:
    """The most bytes whose base64 fits ``chars`` characters (0 when none)."""
    return max(chars, 0) // 4 * 3


@dataclass(frozen=True)
class InlinePlan:
    """``parts``: attachment ids whose content goes inline; ``raw_mime``: whether the whole
    message does; ``skips``: the consumer's skip reasons for what does not fit."""

    parts: tuple[str, ...] = ()
    raw_mime: bool = False
    skips: tuple[SkipReason, ...] = ()


def plan_inline(
    attachments: Sequence[Mapping[str, Any]],
    raw_size: int | None,
    base_entry_bytes: int,
    limits: IngressLimits,
    mode: str,
) -> InlinePlan:
    """What goes inline. ``attachments`` are the listed ones (``id``, ``name``, ``size`` in
    decoded bytes); ``raw_size`` is the whole message's size, None when it was not downloaded
    whole (its skip reason is already there)."""
    if mode == OFF:
        return InlinePlan()
    room = limits.max_event_bytes - base_entry_bytes
    parts: list[str] = []
    skips: list[SkipReason] = []
    for item in attachments:
        size = int(item["size"])
        cost = base64_length(size) + CONTENT_KEY_BYTES
        if cost <= room:
            parts.append(str(item["id"]))
            room -= cost
            continue
        skips.append(
            {
                "type": "attachment",
                "reason": "attachment_total_bytes_exceeded",
                "attachmentId": str(item["id"]),
                "attachmentName": str(item["name"]),
                "size": size,
                "cap": max(decoded_room(room - CONTENT_KEY_BYTES), 1),
            }
        )
    raw_mime = False
    if mode == ALL and raw_size is not None:
        cost = base64_length(raw_size) + RAW_KEY_BYTES
        if raw_size <= limits.max_raw_mime_bytes and cost <= room:
            raw_mime = True
        else:
            cap = min(limits.max_raw_mime_bytes, decoded_room(room - RAW_KEY_BYTES))
            skips.append(
                {
                    "type": "raw_mime",
                    "reason": "raw_mime_over_max_bytes",
                    "size": raw_size,
                    "cap": max(cap, 1),
                }
            )
    return InlinePlan(tuple(parts), raw_mime, tuple(skips))


def content_location(provider_id: str, folder: str, uid_validity: int, uid: int) -> dict[str, str]:
    """Where the API serves this message's bytes (paths under the API's base URL): ``raw``
    the original message, ``part`` one decoded part with ``{partId}`` to fill in."""
    base = (
        f"{API_PATH_PREFIX}/providers/{quote(provider_id, safe='')}/messages/"
        f"{quote(folder, safe='')}/{uid_validity}/{uid}"
    )
    return {"raw": f"{base}/raw", "part": f"{base}/parts/{{partId}}"}


def apply_inline(
    email_data: Mapping[str, Any],
    plan: InlinePlan,
    contents: Mapping[str, bytes],
    raw: bytes | None,
) -> dict[str, Any]:
    """``email_data`` with the planned content added and the plan's skips reported. A planned
    part missing from ``contents`` (its section could not be read) is left without content."""
    data = dict(email_data)
    if plan.parts:
        wanted = set(plan.parts)
        data["attachments"] = [
            dict(item, content=base64.b64encode(contents[item["id"]]).decode("ascii"))
            if item["id"] in wanted and item["id"] in contents
            else item
            for item in data.get("attachments", [])
        ]
    if plan.raw_mime and raw is not None:
        data["rawMimeBase64"] = base64.b64encode(raw).decode("ascii")
    if plan.skips:
        present = list(data.get("ingressSkipReasons", []))
        room = MAX_SKIP_REASONS - len(present)
        data["ingressSkipReasons"] = present + list(plan.skips[: max(room, 0)])
    return data


def content_candidates(
    attachments: Sequence[Mapping[str, Any]], limits: IngressLimits, mode: str
) -> list[str]:
    """For a message not downloaded whole: the attachment ids worth fetching, in order, while
    their estimated content could fit an entry at all (``plan_inline`` decides exactly)."""
    if mode == OFF:
        return []
    room = limits.max_event_bytes
    chosen = []
    for item in attachments:
        size = int(item["size"])
        cost = base64_length(size) + CONTENT_KEY_BYTES
        if size <= limits.max_attachment_bytes and cost <= room:
            chosen.append(str(item["id"]))
            room -= cost
    return chosen
