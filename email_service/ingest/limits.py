"""Size caps on what a message may cost: to fetch, to hold, and to put on the stream (core).

Three places take a cap, and each says what it left out: in the event's
``ingressSkipReasons`` when it is one of the consumer's own four kinds (attachments and a
message not downloaded whole, spelled as the old service spelled them), otherwise in
``ingressTruncations`` (ours: body, headers, recipients, references, the entry bound), both
lists of ``{type, reason, size, cap, ...}`` objects:

1. **Fetching** (``plan_fetch_batches``): a message above ``IMAP_MAX_RAW_MIME_BYTES``
   (by RFC822.SIZE) is not downloaded whole; its header section, BODYSTRUCTURE and capped
   body text parts are (``{"type": "raw_mime", "reason": "raw_mime_over_max_bytes"}``).
   Whole messages are fetched in batches of at most ``IMAP_FETCH_BATCH_SIZE`` messages and
   ``FETCH_BATCH_MAX_BYTES``, so a large one is fetched alone and held once.
2. **The event's fields** (``cap_attachments``, ``cap_text``, ``cap_headers``, ``cap_list``,
   used by ``email_data``): attachments beyond ``IMAP_MAX_ATTACHMENT_COUNT``, above
   ``IMAP_MAX_ATTACHMENT_BYTES``, or past ``IMAP_MAX_TOTAL_ATTACHMENT_BYTES`` are left out of
   ``attachments`` (as the old service did: their id, name and size stay in the reason);
   ``body.text`` and ``body.html`` are cut to ``IMAP_MAX_BODY_TEXT_BYTES`` each; headers to
   ``IMAP_MAX_HEADER_BYTES`` in all; recipients and references to fixed counts.
3. **The stream entry** (``fit_event``): the whole entry, field names and values in UTF-8,
   never exceeds ``EMAIL_SERVICE_MAX_EVENT_BYTES``. Above it, in turn: inline content
   (``inline_content``) dropped, HTML dropped, text
   cut, headers dropped, recipient lists cut, attachment list dropped, references cut to
   their first and last. If even that is too large, ``EventTooLarge`` (a dead letter).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from email_service.errors import EventTooLarge
from email_service.settings import IngressLimits

#: Whole messages fetched in one UID FETCH hold at most this many bytes together (one larger
#: message is fetched alone): the raw bytes of a batch are all in memory at once.
FETCH_BATCH_MAX_BYTES = 8 * 1024 * 1024
#: Recipients listed per field (to, cc): a mail to a whole company still fits an event.
MAX_RECIPIENTS = 1000
#: Message ids kept of a References field: the first (the thread's root) and the last ones,
#: as RFC 5322 section 3.6.4 suggests trimming.
MAX_REFERENCES = 100
#: Entries of ``ingressSkipReasons``; beyond it one entry counts the rest.
MAX_SKIP_REASONS = 100
#: Header fields kept first when the header cap bites: what threading and replies need.
ESSENTIAL_HEADERS = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "content-type",
    "auto-submitted",
    "precedence",
    "x-auto-response-suppress",
    "list-id",
    "return-path",
)

SkipReason = dict[str, Any]


# --- 1. fetching ---


#: ``FetchBatch.mode`` values.
WHOLE = "whole"  #: UID FETCH BODY.PEEK[]
HEADERS = "headers"  #: above the raw cap: header section, BODYSTRUCTURE, capped text parts
MISSING = "missing"  #: the server gave no size: nothing to fetch, a dead letter


@dataclass(frozen=True)
class FetchBatch:
    """UIDs fetched with one command, in one ``mode``."""

    uids: tuple[int, ...]
    mode: str


def plan_fetch_batches(
    sizes: Sequence[tuple[int, int | None]], limits: IngressLimits
) -> list[FetchBatch]:
    """Consecutive batches of ``(uid, RFC822.SIZE or None)`` in the given (ascending) order.

    Batches never reorder UIDs: the cursor moves to each batch's last UID once it is
    published, so every UID before it must be published too.
    """
    batches: list[FetchBatch] = []
    current: list[int] = []
    current_mode = WHOLE
    current_bytes = 0
    for uid, size in sizes:
        if size is None:
            mode, cost = MISSING, 0
        elif size > limits.max_raw_mime_bytes:
            mode, cost = HEADERS, 0
        else:
            mode, cost = WHOLE, size
        if current and (
            mode != current_mode
            or len(current) >= limits.fetch_batch_size
            or current_bytes + cost > FETCH_BATCH_MAX_BYTES
        ):
            batches.append(FetchBatch(tuple(current), current_mode))
            current, current_bytes = [], 0
        current.append(uid)
        current_mode = mode
        current_bytes += cost
    if current:
        batches.append(FetchBatch(tuple(current), current_mode))
    return batches


def raw_mime_skip(size: int, limits: IngressLimits) -> SkipReason:
    return {
        "type": "raw_mime",
        "reason": "raw_mime_over_max_bytes",
        "size": size,
        "cap": limits.max_raw_mime_bytes,
    }


# --- 2. the event's fields ---


def cap_attachments(
    attachments: list[dict[str, Any]], limits: IngressLimits, skips: list[SkipReason]
) -> list[dict[str, Any]]:
    """The attachments within the count, per-attachment and total caps, in order (the old
    service's rules: count first, then size, then the running total)."""
    kept: list[dict[str, Any]] = []
    total = 0
    for item in attachments:
        size = int(item["size"])
        if len(kept) >= limits.max_attachment_count:
            reason, cap = "attachment_count_exceeded", limits.max_attachment_count
        elif size > limits.max_attachment_bytes:
            reason, cap = "attachment_over_max_bytes", limits.max_attachment_bytes
        elif total + size > limits.max_total_attachment_bytes:
            reason, cap = "attachment_total_bytes_exceeded", limits.max_total_attachment_bytes
        else:
            kept.append(item)
            total += size
            continue
        skips.append(
            {
                "type": "attachment",
                "reason": reason,
                "attachmentId": item["id"],
                "attachmentName": item["name"],
                "size": size,
                "cap": cap,
            }
        )
    return kept


def cut_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, on a character boundary."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    return encoded[: max(max_bytes, 0)].decode("utf-8", "ignore")


def cap_text(
    text: str, cap: int, skips: list[SkipReason], *, kind: str, reason: str, **extra: Any
) -> str:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size <= cap:
        return text
    skips.append({"type": kind, "reason": reason, **extra, "size": size, "cap": cap})
    return cut_utf8(text, cap)


def cap_headers(
    headers: dict[str, str], limits: IngressLimits, skips: list[SkipReason]
) -> dict[str, str]:
    """At most ``max_header_bytes`` (names and values) of headers: the essential ones first,
    then the rest in message order; the result keeps message order."""

    def cost(name: str) -> int:
        return len(name.encode("utf-8")) + len(headers[name].encode("utf-8"))

    total = sum(cost(name) for name in headers)
    if total <= limits.max_header_bytes:
        return headers
    order = sorted(headers, key=lambda name: name.lower() not in ESSENTIAL_HEADERS)
    chosen: set[str] = set()
    used = 0
    for name in order:
        if used + cost(name) <= limits.max_header_bytes:
            chosen.add(name)
            used += cost(name)
    skips.append(
        {
            "type": "header",
            "reason": "header_total_bytes_exceeded",
            "omitted": len(headers) - len(chosen),
            "size": total,
            "cap": limits.max_header_bytes,
        }
    )
    return {name: value for name, value in headers.items() if name in chosen}


def cap_list(
    items: list[Any], cap: int, skips: list[SkipReason], *, kind: str, field: str
) -> list[Any]:
    """The first ``cap`` items (for references: the first and the last ``cap - 1``)."""
    if len(items) <= cap:
        return items
    reason = f"{kind}_count_exceeded"
    skips.append({"type": kind, "reason": reason, "field": field, "size": len(items), "cap": cap})
    if field == "references":
        return [items[0], *items[len(items) - cap + 1 :]]
    return items[:cap]


#: The consumer's own ``ingressSkipReasons`` values, by ``type`` (DESIGN.md section 3); any
#: other cut is reported under ``ingressTruncations``, a key of ours.
CONSUMER_SKIP_REASONS = {
    "attachment": frozenset(
        {
            "attachment_over_max_bytes",
            "attachment_count_exceeded",
            "attachment_total_bytes_exceeded",
        }
    ),
    "raw_mime": frozenset({"raw_mime_over_max_bytes"}),
}


def is_consumer_skip(skip: SkipReason) -> bool:
    return skip.get("reason") in CONSUMER_SKIP_REASONS.get(skip.get("type", ""), ())


def report_skips(skips: list[SkipReason]) -> dict[str, list[SkipReason]]:
    """The ``emailData`` keys that say what was left out: ``ingressSkipReasons`` for the
    consumer's own kinds, ``ingressTruncations`` for the rest; each at most
    ``MAX_SKIP_REASONS`` long (one truncation entry counts what did not fit), and only
    present when not empty."""
    consumer = [skip for skip in skips if is_consumer_skip(skip)]
    ours = [skip for skip in skips if not is_consumer_skip(skip)]
    report: dict[str, list[SkipReason]] = {}
    if len(consumer) > MAX_SKIP_REASONS:
        ours.append(_summary("ingressSkipReasons", len(consumer) - MAX_SKIP_REASONS))
        consumer = consumer[:MAX_SKIP_REASONS]
    if len(ours) > MAX_SKIP_REASONS:
        rest = len(ours) - (MAX_SKIP_REASONS - 1)
        ours = [*ours[: MAX_SKIP_REASONS - 1], _summary("ingressTruncations", rest)]
    if consumer:
        report["ingressSkipReasons"] = consumer
    if ours:
        report["ingressTruncations"] = ours
    return report


def _summary(field: str, rest: int) -> SkipReason:
    return {
        "type": "ingress",
        "reason": "skip_reasons_truncated",
        "field": field,
        "size": rest,
        "cap": MAX_SKIP_REASONS,
    }


# --- 3. the stream entry ---


def entry_bytes(fields: Mapping[str, str]) -> int:
    """What an entry costs against the bound: names and values in UTF-8."""
    return sum(
        len(name.encode("utf-8")) + len(value.encode("utf-8", "surrogatepass"))
        for name, value in fields.items()
    )


def fit_event(
    email_data: Mapping[str, Any],
    render: Callable[[Mapping[str, Any]], dict[str, str]],
    max_bytes: int,
) -> tuple[dict[str, str], Mapping[str, Any]]:
    """The fields ``render`` gives for ``email_data``, shrunk step by step until they fit,
    and the ``emailData`` they carry."""
    fields = render(email_data)
    if entry_bytes(fields) <= max_bytes:
        return fields, email_data
    data = deepcopy(dict(email_data))
    for step in _SHRINK_STEPS:
        for _attempt in range(4):  # a cut text can still be long when JSON escapes it
            over = entry_bytes(fields) - max_bytes
            if over <= 0 or not step(data, over, max_bytes):
                break
            fields = render(data)
        if entry_bytes(fields) <= max_bytes:
            return fields, data
    raise EventTooLarge(
        f"the event is {entry_bytes(fields)} bytes even without body, headers and "
        f"attachments, above EMAIL_SERVICE_MAX_EVENT_BYTES={max_bytes}"
    )


def _note(data: dict[str, Any], field: str, size: int, cap: int) -> None:
    skips = data.setdefault("ingressTruncations", [])
    entry = {"type": "event", "reason": "event_over_max_bytes", "field": field}
    if not any(s.get("field") == field and s.get("type") == "event" for s in skips):
        skips.append(entry | {"size": size, "cap": cap})


def _drop_raw_mime(data: dict[str, Any], over: int, cap: int) -> bool:
    if "rawMimeBase64" not in data:
        return False
    _note(data, "rawMimeBase64", len(data.pop("rawMimeBase64")), cap)
    return True


def _drop_content(data: dict[str, Any], over: int, cap: int) -> bool:
    with_content = [item for item in data.get("attachments") or [] if "content" in item]
    if not with_content:
        return False
    _note(data, "attachments.content", len(with_content), cap)
    data["attachments"] = [
        {key: value for key, value in item.items() if key != "content"}
        for item in data["attachments"]
    ]
    return True


def _drop_html(data: dict[str, Any], over: int, cap: int) -> bool:
    body = data.get("body") or {}
    if "html" not in body:
        return False
    _note(data, "body.html", len(body.pop("html").encode("utf-8", "surrogatepass")), cap)
    return True


def _cut_text(data: dict[str, Any], over: int, cap: int) -> bool:
    body = data.get("body") or {}
    text = body.get("text") or ""
    size = len(text.encode("utf-8", "surrogatepass"))
    if not size:
        return False
    _note(data, "body.text", size, cap)
    body["text"] = cut_utf8(text, size - over - 256)
    return True


def _drop_headers(data: dict[str, Any], over: int, cap: int) -> bool:
    if not data.get("headers"):
        return False
    _note(data, "headers", len(data["headers"]), cap)
    data["headers"] = {}
    return True


def _cut_recipients(data: dict[str, Any], over: int, cap: int) -> bool:
    changed = False
    for field in ("to", "cc"):
        if len(data.get(field) or []) > 1:
            _note(data, field, len(data[field]), cap)
            data[field] = data[field][:1]
            changed = True
    return changed


def _drop_attachments(data: dict[str, Any], over: int, cap: int) -> bool:
    if not data.get("attachments"):
        return False
    _note(data, "attachments", len(data["attachments"]), cap)
    data["attachments"] = []
    return True


def _cut_references(data: dict[str, Any], over: int, cap: int) -> bool:
    references = data.get("references") or []
    if len(references) <= 2:
        return False
    _note(data, "references", len(references), cap)
    data["references"] = [references[0], references[-1]]
    return True


_SHRINK_STEPS: tuple[Callable[[dict[str, Any], int, int], bool], ...] = (
    _drop_raw_mime,
    _drop_content,
    _drop_html,
    _cut_text,
    _drop_headers,
    _cut_recipients,
    _drop_attachments,
    _cut_references,
)
