"""One fetched message in, one stream entry out: the event, or a dead letter (core).

Shared by the folder listeners and ``email-service dlq replay``, so a replayed message
becomes exactly the event the listener would have published. Time and the execution id's
randomness are passed in. Nothing raised while turning the bytes into an event escapes: a
message that cannot be parsed is ``unparseable``, one without a sender address the consumer
accepts ``no_usable_sender``, one whose event cannot fit the entry bound ``event_too_large``,
and any other exception (a bug of ours) ``event_build_failed``; each becomes a dead letter
and the folder moves on.

Every event is checked against the consumer's contract (``contract.check``) here, the one
place events are made, for the listeners and for replays alike: an event that does not pass
is never published; it becomes a ``contract_violation`` dead letter naming the failing path.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from email_service.contract.check import check_entry
from email_service.errors import EventTooLarge, MessageUnparseable, NoUsableSender
from email_service.imap.fetched import Fetched, FetchedHeaders, FetchedMessage
from email_service.ingest.email_data import MessageMeta, build_email_data, sha256_hex
from email_service.ingest.inline_content import (
    apply_inline,
    content_candidates,
    content_location,
    plan_inline,
)
from email_service.ingest.limits import entry_bytes, fit_event, raw_mime_skip
from email_service.ingest.mime_structure import (
    BodySection,
    attachments_from_structure,
    iter_leaves,
    parse_without_body,
    plan_body_sections,
)
from email_service.ingest.parsing import ParsedMessage, parse_message, part_contents
from email_service.ingest.transfer import decode_transfer
from email_service.model import FolderKey
from email_service.publish.events import (
    CONTRACT_VIOLATION,
    EVENT_BUILD_FAILED,
    EVENT_TOO_LARGE,
    NO_USABLE_SENDER,
    UNFETCHABLE,
    UNPARSEABLE,
    RawMessage,
    StreamEntry,
    build_dead_letter_fields,
    build_event_fields,
    choose_execution_id,
    event_id_for,
)
from email_service.settings import IngressLimits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestTarget:
    """Where the messages come from, and the rules for their events."""

    key: FolderKey
    provider_type: str
    uid_validity: int
    limits: IngressLimits
    channel_by_tenant: bool = False


def build_entry(
    fetched: Fetched, target: IngestTarget, *, now: datetime, random_uuid: uuid.UUID
) -> StreamEntry:
    """The event for ``fetched``, or its dead letter; never raises."""
    try:
        parsed, skips, digest = _parse(fetched, target.limits)
        meta = MessageMeta(
            tenant=target.key.tenant,
            provider_id=target.key.provider_id,
            provider_type=target.provider_type,
            folder=target.key.folder,
            uid=fetched.uid,
            uid_validity=target.uid_validity,
            internal_date=fetched.internal_date,
            size=fetched.size,
            flags=fetched.flags,
            fetched_at=now,
        )
        email_data = build_email_data(parsed, meta, digest, target.limits, skips)
        email_data["contentLocation"] = content_location(
            target.key.provider_id, target.key.folder, target.uid_validity, fetched.uid
        )
        event_id = event_id_for(target.key, target.uid_validity, fetched.uid)
        execution_id = choose_execution_id(
            target.key, by_tenant=target.channel_by_tenant, random_uuid=random_uuid
        )

        def render(data: Any) -> dict[str, str]:
            return build_event_fields(
                email_data=data,
                key=target.key,
                event_id=event_id,
                published_at=now,
                execution_id=execution_id,
            )

        email_data = _with_content(
            email_data, fetched, target.limits, entry_bytes(render(email_data))
        )
        fields, sent = fit_event(email_data, render, target.limits.max_event_bytes)
        violation = check_entry(fields)
        if violation is not None:
            logger.error("uid %d: %s", fetched.uid, violation.describe())
            entry = dead_letter_entry(
                fetched, target, CONTRACT_VIOLATION, violation.describe(), now=now
            )
            return dataclasses.replace(entry, violation=violation.field)
        skipped = tuple(
            str(skip["reason"])
            for key in ("ingressSkipReasons", "ingressTruncations")
            for skip in sent.get(key, ())
        )
        return StreamEntry(
            fetched.uid, fields, gmail_msgid=fetched.gmail_msgid, skip_reasons=skipped
        )
    except NoUsableSender as exc:
        return dead_letter_entry(fetched, target, NO_USABLE_SENDER, str(exc), now=now)
    except EventTooLarge as exc:
        return dead_letter_entry(fetched, target, EVENT_TOO_LARGE, str(exc), now=now)
    except MessageUnparseable as exc:
        return dead_letter_entry(fetched, target, UNPARSEABLE, str(exc), now=now)
    except Exception as exc:  # a bug of ours must not block the folder
        logger.exception("building the event for uid %d failed", fetched.uid)
        detail = f"{type(exc).__name__}: {exc}"
        return dead_letter_entry(fetched, target, EVENT_BUILD_FAILED, detail, now=now)


def _parse(
    fetched: Fetched, limits: IngressLimits
) -> tuple[ParsedMessage, list[dict[str, Any]], str]:
    """The parsed message, what was skipped before parsing, and the digest for the
    fallback id (of the whole message, or of the header section when that is all we have)."""
    if isinstance(fetched, FetchedMessage):
        return parse_message(fetched.raw), [], sha256_hex(fetched.raw)
    parsed = parse_without_body(fetched, sections_to_fetch(fetched, limits))
    return parsed, [raw_mime_skip(fetched.size, limits)], sha256_hex(fetched.header)


def _with_content(
    email_data: dict[str, Any], fetched: Fetched, limits: IngressLimits, base_entry_bytes: int
) -> dict[str, Any]:
    """``email_data`` with the attachment bytes and raw message that fit inline."""
    whole = isinstance(fetched, FetchedMessage)
    plan = plan_inline(
        email_data["attachments"],
        fetched.size if whole else None,
        base_entry_bytes,
        limits,
        limits.inline_content,
    )
    if not plan.parts and not plan.raw_mime and not plan.skips:
        return email_data
    if isinstance(fetched, FetchedMessage):
        return apply_inline(email_data, plan, part_contents(fetched.raw, plan.parts), fetched.raw)
    return apply_inline(email_data, plan, section_contents(fetched, plan.parts), None)


def section_contents(fetched: FetchedHeaders, parts: tuple[str, ...]) -> dict[str, bytes]:
    """The decoded bytes of the attachment sections fetched whole (``content_sections``)."""
    if fetched.structure is None:
        return {}
    encodings = {part.section: part.encoding for part, _ in iter_leaves(fetched.structure)}
    return {
        part: decode_transfer(fetched.sections[part], encodings.get(part, "7bit"))
        for part in parts
        if part in fetched.sections and part in fetched.complete_sections
    }


def content_sections(fetched: FetchedHeaders, limits: IngressLimits) -> list[tuple[str, int]]:
    """The attachment sections of a message not downloaded whole worth fetching whole, to
    inline their content: ``(section, octets)``."""
    if fetched.structure is None:
        return []
    listed = [
        {"id": info.part, "size": info.size}
        for info in attachments_from_structure(fetched.structure)
    ]
    wire = {part.section: part.size for part, _ in iter_leaves(fetched.structure)}
    chosen = content_candidates(listed, limits, limits.inline_content)
    return [(section, wire[section]) for section in chosen if wire.get(section, 0) > 0]


def dead_letter_entry(
    fetched: Fetched, target: IngestTarget, reason: str, detail: str, *, now: datetime
) -> StreamEntry:
    raw = fetched.raw if isinstance(fetched, FetchedMessage) else None
    message = RawMessage(
        raw=raw,
        size=fetched.size,
        internal_date=fetched.internal_date,
        flags=fetched.flags,
        gmail_msgid=fetched.gmail_msgid,
    )
    return _dead_letter(fetched.uid, target, reason, detail, message, now=now)


def unfetchable_entry(
    uid: int, target: IngestTarget, detail: str, *, now: datetime, size: int | None = None
) -> StreamEntry:
    """The dead letter of a UID that the server listed but would not give."""
    return _dead_letter(uid, target, UNFETCHABLE, detail, RawMessage(size=size), now=now)


def _dead_letter(
    uid: int,
    target: IngestTarget,
    reason: str,
    detail: str,
    message: RawMessage,
    *,
    now: datetime,
) -> StreamEntry:
    logger.warning("uid %d goes to the dead-letter stream: %s", uid, reason)
    fields = build_dead_letter_fields(
        key=target.key,
        provider_type=target.provider_type,
        uid_validity=target.uid_validity,
        uid=uid,
        reason=reason,
        detail=detail,
        message=message,
        failed_at=now,
        max_raw_bytes=target.limits.dead_letter_raw_bytes,
    )
    return StreamEntry(uid, fields, dead_letter=True, gmail_msgid=message.gmail_msgid)


def sections_to_fetch(fetched: FetchedHeaders, limits: IngressLimits) -> list[BodySection]:
    """The body parts of a message not downloaded whole that ``build_entry`` will read."""
    if fetched.structure is None:
        return []
    return plan_body_sections(fetched.structure, limits.max_body_text_bytes)
