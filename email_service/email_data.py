"""Core (pure): how a parsed message and its mailbox metadata map to the event's ``emailData``.

``build_email_data`` returns exactly the ``emailData`` object of DESIGN.md section 3, made of
str, int, bool, None, list and dict only. The choices the contract leaves open:

- ``id`` is the Message-ID in angle brackets; a message without a usable one gets
  ``imap-hash-<sha256 of the raw bytes>-<uid>``, the same for the same bytes at the same UID.
- ``from`` is the first From mailbox; when From is missing or holds no address, the first
  Sender mailbox (RFC 5322 section 3.6.2: the mailbox that sent it); when both are missing,
  ``{"email": ""}``. The message is still published: the old service dropped such messages
  silently, and losing mail is worse than a ticket with an unknown requester.
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
  each address part is cut to ``ADDRESS_PART_MAX_BYTES``.
- Caps (``limits``) leave things out and say so in ``ingressSkipReasons``; text that was not
  decoded as its charset label promised is listed in ``charsetIssues``
  (``[{part, declared, decodedAs, issue, lossy?}]``). Both are additive and appear only
  when non-empty.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from email_service.charsets import CharsetIssue
from email_service.limits import (
    MAX_RECIPIENTS,
    MAX_REFERENCES,
    IngressLimits,
    SkipReason,
    bounded_skips,
    cap_attachments,
    cap_headers,
    cap_list,
    cap_text,
)
from email_service.parsing import AttachmentInfo, Mailbox, ParsedMessage

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
    """What the mailbox says about a message, beside its bytes.

    ``internal_date`` must be timezone-aware (IMAP INTERNALDATE carries its zone).
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

    def __post_init__(self) -> None:
        if self.provider_type not in PROVIDER_TYPES:
            raise ValueError(f"provider_type must be one of {sorted(PROVIDER_TYPES)}")
        if self.internal_date is not None and self.internal_date.utcoffset() is None:
            raise ValueError("internal_date must be timezone-aware")


def sha256_hex(raw: bytes) -> str:
    """Hex SHA-256 of the raw message, for the fallback id."""
    return hashlib.sha256(raw).hexdigest()


def iso_utc(moment: datetime) -> str:
    """``2024-01-02T09:00:00.000Z``: UTC, milliseconds, as JavaScript's ``toISOString``."""
    if moment.utcoffset() is None:
        raise ValueError("a naive datetime has no defined UTC time")
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def build_email_data(
    message: ParsedMessage,
    meta: MessageMeta,
    raw_sha256: str,
    limits: IngressLimits | None = None,
    skips: Sequence[SkipReason] = (),
) -> dict[str, Any]:
    """The ``emailData`` object of the INBOUND_EMAIL_RECEIVED event for one message.

    ``limits`` caps attachments, body and headers (default: the settings' defaults);
    ``skips`` are reasons found before parsing (a message not downloaded whole).
    """
    limits = limits or IngressLimits()
    skipped = list(skips)
    own_ids = _message_ids([message.message_id] if message.message_id else [])
    own_id = own_ids[0] if own_ids else f"imap-hash-{raw_sha256}-{meta.uid}"
    references = _message_ids(message.references)
    replied = _message_ids([message.in_reply_to] if message.in_reply_to else [])
    in_reply_to = replied[0] if replied else None
    received = message.date or meta.internal_date
    data: dict[str, Any] = {
        "id": own_id,
        "provider": meta.provider_type,
        "providerId": meta.provider_id,
        "tenant": meta.tenant,
        "receivedAt": iso_utc(received) if received else None,
        "from": _address(_author(message), "from", skipped),
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
        "attachments": cap_attachments(
            [_attachment(attachment) for attachment in message.attachments], limits, skipped
        ),
        "threadId": references[0] if references else in_reply_to or own_id,
        "inReplyTo": in_reply_to,
        "references": cap_list(
            references, MAX_REFERENCES, skipped, kind="references", field="references"
        ),
        "headers": cap_headers(_headers(message.headers, skipped), limits, skipped),
        "imap": {
            "folder": meta.folder,
            "uid": meta.uid,
            "uidValidity": meta.uid_validity,
            "internalDate": iso_utc(meta.internal_date) if meta.internal_date else None,
            "size": meta.size,
            "flags": list(meta.flags),
        },
    }
    if skipped:
        data["ingressSkipReasons"] = bounded_skips(skipped)
    if message.charset_issues:
        data["charsetIssues"] = [_charset_issue(issue) for issue in message.charset_issues]
    return data


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


def _author(message: ParsedMessage) -> Mailbox:
    for mailbox in (*message.from_, *message.sender):
        if mailbox.email:
            return mailbox
    return Mailbox(name="", email="")


def _addresses(
    mailboxes: Sequence[Mailbox], field: str, skipped: list[SkipReason]
) -> list[dict[str, str]]:
    kept = cap_list(list(mailboxes), MAX_RECIPIENTS, skipped, kind="recipients", field=field)
    return [_address(mailbox, field, skipped) for mailbox in kept]


def _address(mailbox: Mailbox, field: str, skipped: list[SkipReason]) -> dict[str, str]:
    parts = {"email": mailbox.email, "name": mailbox.name}
    for key, value in parts.items():
        size = len(value.encode("utf-8"))
        if size > ADDRESS_PART_MAX_BYTES:
            parts[key] = _bounded(value, ADDRESS_PART_MAX_BYTES)
            skip = {"type": "address", "reason": "address_over_max_bytes", "field": field}
            skipped.append(skip | {"size": size, "cap": ADDRESS_PART_MAX_BYTES})
    if parts["name"]:
        return {"email": parts["email"], "name": parts["name"]}
    return {"email": parts["email"]}


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
