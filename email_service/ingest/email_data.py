"""Core (pure): how a parsed message and its mailbox metadata map to the event's ``emailData``.

``build_email_data`` returns exactly the ``emailData`` object of DESIGN.md section 3, made of
str, int, bool, list and dict only (never None). The choices the contract leaves open:

- ``id`` is the Message-ID in angle brackets; a message without a usable one gets
  ``imap-hash-<sha256 of the raw bytes>-<uid>``, the same for the same bytes at the same UID.
- No key of the contract is ever ``null``: an optional field without a value is left out
  (``inReplyTo``, ``cc``'s entries' ``name``, ``body.html``, ``imap.internalDate``...).
- Addresses are written as the consumer accepts them (``ingest.addresses.normalise_address``:
  IDNA domains, and so on). A recipient whose address does not fit is left out of
  ``to``/``cc`` (it stays in ``headers``; ``ingressTruncations`` counts it). ``from`` is the
  first From mailbox that fits, else Sender's, Reply-To's, then Return-Path's (``fromHeader``
  names the header it came from); when none fits, ``NoUsableSender``: the message becomes a
  dead letter, never an event the consumer would drop.
- ``receivedAt`` is the Date header, else INTERNALDATE, else when we fetched the message.
- ``name`` is left out of an address when empty, as ``html`` is left out of ``body`` and
  ``contentId`` out of an attachment when there is none.
- ``receivedAt`` and ``imap.internalDate`` are UTC in JavaScript's ``toISOString`` form
  (``2024-01-02T09:00:00.000Z``), as the old service wrote them.
- ``body.text`` is derived from the HTML (``html_to_text``) when the message has no text part,
  or only a blank one.
- ``attachments[].id`` is the MIME part number as IMAP numbers body sections ("2", "1.3"):
  stable for a message, and ``UID FETCH <uid> BODY.PEEK[<id>]`` fetches the content.
  ``contentId`` keeps its angle brackets, as in the message (and as nodemailer gave it).
- ``headers`` maps each header name, spelled as at its first occurrence, to its unfolded,
  RFC 2047-decoded value; repeated fields (Received, ...) are joined with "\\n" in message
  order, and each value is cut to ``HEADER_VALUE_MAX_BYTES`` of UTF-8 (``subject`` too).
- Message ids longer than ``MESSAGE_ID_MAX_BYTES`` are not ids (RFC 5322 lines end at 998);
  a display name is cut to ``ADDRESS_PART_MAX_BYTES``.
- Caps (``limits``) leave things out and say so: attachments and a message not downloaded
  whole in ``ingressSkipReasons`` (the consumer's own kinds only), every other cut in
  ``ingressTruncations`` (ours; docs/consumers.md). Text that was not decoded as its charset
  label promised is listed in ``charsetIssues`` (``[{part, declared, decodedAs, issue,
  lossy?}]``). Each appears only when non-empty.
- An attachment of zero bytes is left out (the consumer's newer schema wants a size of at
  least 1) and noted in ``ingressTruncations``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from email_service.contract.formats import iso_utc
from email_service.errors import NoUsableSender
from email_service.ingest.addresses import normalise_address
from email_service.ingest.charsets import CharsetIssue
from email_service.ingest.limits import (
    MAX_RECIPIENTS,
    MAX_REFERENCES,
    SkipReason,
    cap_attachments,
    cap_headers,
    cap_list,
    cap_text,
    report_skips,
)
from email_service.ingest.parsing import AttachmentInfo, Mailbox, ParsedMessage
from email_service.settings import IngressLimits

#: Provider types of the contract (DESIGN.md section 4).
PROVIDER_TYPES = frozenset({"imap", "google", "microsoft"})

#: Longest header value in an event, in bytes of UTF-8: a DKIM signature or a long list of
#: recipients fits, while one giant header cannot swell every consumer's copy of the event.
HEADER_VALUE_MAX_BYTES = 8 * 1024
#: Longest message id taken as one: RFC 5322 lines end at 998 characters.
MESSAGE_ID_MAX_BYTES = 998
#: Longest display name or address kept: real ones are far shorter (an address at most 254).
ADDRESS_PART_MAX_BYTES = 1024

#: Extension of the name given to an unnamed attachment ("attachment" plus this), so that a
#: consumer saving it picks a sensible program; other types get no extension.
_UNNAMED_EXTENSIONS = {
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "text/calendar": ".ics",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/rfc822-headers": ".txt",
    "message/delivery-status": ".txt",
    "application/pdf": ".pdf",
    "application/pgp-signature": ".asc",
    "application/pkcs7-signature": ".p7s",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
}

_HTML_SPACE = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")
_BRACKETED_ID = re.compile(r"<([^<>]*)>")
_ID_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What the mailbox says about a message, beside its bytes, and when we fetched it.

    ``internal_date`` and ``fetched_at`` must be timezone-aware (IMAP INTERNALDATE carries
    its zone); ``fetched_at`` is the last fallback of ``receivedAt``.
    """

    tenant: str
    provider_id: str
    provider_type: str  # imap|google|microsoft
    folder: str
    uid: int
    uid_validity: int
    internal_date: datetime | None
    size: int
    flags: tuple[str, ...]
    fetched_at: datetime

    def __post_init__(self) -> None:
        if self.provider_type not in PROVIDER_TYPES:
            raise ValueError(f"provider_type must be one of {sorted(PROVIDER_TYPES)}")
        if self.internal_date is not None and self.internal_date.utcoffset() is None:
            raise ValueError("internal_date must be timezone-aware")
        if self.fetched_at.utcoffset() is None:
            raise ValueError("fetched_at must be timezone-aware")


def sha256_hex(raw: bytes) -> str:
    """Hex SHA-256 of the raw message, for the fallback id."""
    return hashlib.sha256(raw).hexdigest()


def build_email_data(
    message: ParsedMessage,
    meta: MessageMeta,
    raw_sha256: str,
    limits: IngressLimits | None = None,
    skips: Sequence[SkipReason] = (),
) -> dict[str, Any]:
    """The ``emailData`` object of the INBOUND_EMAIL_RECEIVED event for one message.

    ``limits`` caps attachments, body and headers (default: the settings' defaults);
    ``skips`` are reasons found before parsing (a message not downloaded whole). Raises
    ``NoUsableSender`` when no sender address fits the consumer's format.
    """
    limits = limits or IngressLimits()
    skipped = list(skips)
    sender, sender_header = _sender(message, skipped)
    own_ids = _message_ids([message.message_id] if message.message_id else [])
    own_id = own_ids[0] if own_ids else f"imap-hash-{raw_sha256}-{meta.uid}"
    references = _message_ids(message.references)
    replied = _message_ids([message.in_reply_to] if message.in_reply_to else [])
    received = _first_moment(message.date, meta.internal_date, meta.fetched_at)
    imap: dict[str, Any] = {
        "folder": meta.folder,
        "uid": meta.uid,
        "uidValidity": meta.uid_validity,
        "size": meta.size,
        "flags": list(meta.flags),
    }
    if meta.internal_date is not None:
        imap["internalDate"] = iso_utc(meta.internal_date)
    data: dict[str, Any] = {
        "id": own_id,
        "provider": meta.provider_type,
        "providerId": meta.provider_id,
        "tenant": meta.tenant,
        "receivedAt": received,
        "from": sender,
        "fromHeader": sender_header,
        "to": _addresses(message.to, "to", skipped),
        "cc": _addresses(message.cc, "cc", skipped),
        "subject": cap_text(
            message.subject,
            HEADER_VALUE_MAX_BYTES,
            skipped,
            kind="header",
            reason="header_value_over_max_bytes",
            headerName="Subject",
        ),
        "body": _body(message, limits, skipped),
        "attachments": cap_attachments(_attachments(message, skipped), limits, skipped),
        "threadId": references[0] if references else replied[0] if replied else own_id,
        "references": cap_list(
            references, MAX_REFERENCES, skipped, kind="references", field="references"
        ),
        "headers": cap_headers(_headers(message.headers, skipped), limits, skipped),
        "imap": imap,
    }
    if replied:
        data["inReplyTo"] = replied[0]
    data.update(report_skips(skipped))
    if message.charset_issues:
        data["charsetIssues"] = [_charset_issue(issue) for issue in message.charset_issues]
    return data


def _first_moment(*moments: datetime | None) -> str:
    """The first of ``moments`` that is set and has a UTC time, as ``iso_utc``."""
    for moment in moments:
        if moment is None:
            continue
        try:
            return iso_utc(moment)
        except (OverflowError, ValueError):  # year 1 at +01:00 has no UTC time in range
            continue
    raise ValueError("no moment to report as receivedAt")


def _charset_issue(issue: CharsetIssue) -> dict[str, str | bool]:
    item: dict[str, str | bool] = {
        "part": issue.part,
        "declared": issue.declared,
        "decodedAs": issue.decoded_as,
        "issue": issue.issue,
    }
    if issue.lossy:
        item["lossy"] = True
    return item


def _message_ids(values: Iterable[str]) -> list[str]:
    """Message ids in ``<id>`` form, in order, each once.

    Bracketed ids are taken as written, less any white space inside (left by bad folding).
    A field with no brackets at all is split on white space and commas, and only tokens
    with an "@" count, so that "Your message of Monday" yields nothing.
    """
    found: list[str] = []
    for value in values:
        bracketed = _BRACKETED_ID.findall(value)
        if bracketed:
            tokens = ["".join(token.split()) for token in bracketed]
        else:
            tokens = [token for token in _ID_SEPARATORS.split(value) if "@" in token]
        found.extend(
            f"<{token}>"
            for token in tokens
            if token and len(token.encode("utf-8")) <= MESSAGE_ID_MAX_BYTES
        )
    return list(dict.fromkeys(found))


#: Where the sender is taken from, in order (DESIGN.md section 3).
SENDER_HEADERS = ("From", "Sender", "Reply-To", "Return-Path")


def _sender(message: ParsedMessage, skipped: list[SkipReason]) -> tuple[dict[str, str], str]:
    """The first sender mailbox whose address fits, and the header it came from."""
    candidates = (message.from_, message.sender, message.reply_to, message.return_path)
    for header, mailboxes in zip(SENDER_HEADERS, candidates, strict=True):
        for mailbox in mailboxes:
            address = _address(mailbox, "from", skipped)
            if address is not None:
                return address, header
    raise NoUsableSender(
        "no From, Sender, Reply-To or Return-Path address fits the consumer's e-mail format "
        "(DESIGN.md section 3)"
    )


def _addresses(
    mailboxes: Sequence[Mailbox], field: str, skipped: list[SkipReason]
) -> list[dict[str, str]]:
    """The mailboxes whose addresses fit, in order; the others are counted as left out."""
    fitting = [item for item in (_address(m, field, skipped) for m in mailboxes) if item]
    if len(fitting) < len(mailboxes):
        skipped.append(
            {
                "type": "address",
                "reason": "address_not_accepted",
                "field": field,
                "size": len(mailboxes) - len(fitting),
            }
        )
    return cap_list(fitting, MAX_RECIPIENTS, skipped, kind="recipients", field=field)


def _address(mailbox: Mailbox, field: str, skipped: list[SkipReason]) -> dict[str, str] | None:
    """``{email, name?}`` with the address normalised, or None when it does not fit."""
    email = normalise_address(mailbox.email)
    if email is None:
        return None
    name = mailbox.name.strip()
    if not name:
        return {"email": email}
    size = len(name.encode("utf-8"))
    if size > ADDRESS_PART_MAX_BYTES:
        name = _bounded(name, ADDRESS_PART_MAX_BYTES)
        skip = {"type": "address", "reason": "address_over_max_bytes", "field": field}
        skipped.append(skip | {"size": size, "cap": ADDRESS_PART_MAX_BYTES})
    return {"email": email, "name": name}


def _body(
    message: ParsedMessage, limits: IngressLimits, skipped: list[SkipReason]
) -> dict[str, str]:
    cap = limits.max_body_text_bytes
    html = message.html
    if html is not None:
        html = cap_text(html, cap, skipped, kind="body", reason="body_html_over_max_bytes")
    text = message.text or ""
    if not text.strip() and html:
        text = html_to_text(html)
    text = cap_text(text, cap, skipped, kind="body", reason="body_text_over_max_bytes")
    if html:
        return {"text": text, "html": html}
    return {"text": text}


def _attachments(message: ParsedMessage, skipped: list[SkipReason]) -> list[dict[str, Any]]:
    """The attachments as the contract lists them; empty ones are noted, not listed."""
    listed = []
    for attachment in message.attachments:
        item = _attachment(attachment)
        if attachment.size > 0:
            listed.append(item)
            continue
        skipped.append(
            {
                "type": "attachment",
                "reason": "attachment_empty",
                "attachmentId": item["id"],
                "attachmentName": item["name"],
                "size": 0,
            }
        )
    return listed


def _attachment(attachment: AttachmentInfo) -> dict[str, str | int | bool]:
    extension = _UNNAMED_EXTENSIONS.get(attachment.content_type, "")
    item: dict[str, str | int | bool] = {
        "id": attachment.part,
        "name": attachment.name or f"attachment{extension}",
        "contentType": attachment.content_type,
        "size": attachment.size,
    }
    content_id = "".join((attachment.content_id or "").split()).strip("<>")
    if content_id:
        item["contentId"] = f"<{content_id}>"
    item["isInline"] = attachment.is_inline
    return item


def _headers(fields: Iterable[tuple[str, str]], skipped: list[SkipReason]) -> dict[str, str]:
    spelling: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for name, value in fields:
        key = name.lower()
        spelling.setdefault(key, name)
        values.setdefault(key, []).append(value)
    return {
        spelling[key]: cap_text(
            "\n".join(joined),
            HEADER_VALUE_MAX_BYTES,
            skipped,
            kind="header",
            reason="header_value_over_max_bytes",
            headerName=_bounded(spelling[key], 256),
        )
        for key, joined in values.items()
    }


def _bounded(value: str, max_bytes: int) -> str:
    encoded = value.encode("utf-8")
    if len(encoded) <= max_bytes:
        return value
    return encoded[:max_bytes].decode("utf-8", "ignore")


# --- HTML to text ---

#: Elements whose content is not text a reader sees.
_HIDDEN = frozenset({"script", "style", "title", "template", "noscript"})

#: Elements that start on a new line and end one.
# fmt: off
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "caption", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "tfoot", "thead", "tr", "ul",
    }
)
# fmt: on


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.hidden = 0
        self.preformatted = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.pieces.append("\n")
        elif tag in ("td", "th"):
            self._separate(" ")
        elif tag in _BLOCKS:
            self._separate("\n")
            if tag == "li":
                self.pieces.append("- ")
            elif tag == "pre":
                self.preformatted += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.pieces.append("\n")
        elif tag == "hr":
            self._separate("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self._separate("\n")
            if tag == "pre":
                self.preformatted = max(0, self.preformatted - 1)

    def _separate(self, separator: str) -> None:
        """Add a line break (or space) unless the text already ends with one."""
        if self.pieces and not self.pieces[-1].endswith(("\n", separator)):
            self.pieces.append(separator)

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if not self.preformatted:
            data = _HTML_SPACE.sub(" ", data)
            if not self.pieces or self.pieces[-1][-1:].isspace():
                data = data.lstrip(" ")
        if data:
            self.pieces.append(data)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: script, style and title dropped, block elements and
    ``<br>`` on their own lines, list items marked "- ", runs of blank lines cut to one."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    text = "\n".join(line.rstrip() for line in "".join(collector.pieces).split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip("\n")
