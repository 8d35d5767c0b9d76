"""Core (pure: message bytes in, ParsedMessage out; no IO): the only module importing mailparser.

What comes from mail-parser, and what from the standard library's ``email`` package and why:

- mail-parser parses the bytes (turning a ``RecursionError`` on absurdly nested multiparts into
  its own error), the From/To/Cc lists (it decodes RFC 2047 display names in their lexical
  context, so ``=?utf-8?q?Doe=2C_J?= <j@x>`` stays one mailbox, and it drops ambiguous items
  instead of inventing mailboxes) and the Date header (UTC, None when invalid).
- The stdlib tree mail-parser builds (``MailParser.message``) is read here for the rest, where
  mail-parser is wrong for us: it drops the non-UTF-8 octets of raw 8-bit headers ("café" in
  windows-1252 comes back "caf") and escapes them in display names; it names unnamed
  attachments with random strings (the same message would give different events); it merges
  the text of attached messages into the body; and it keeps neither the MIME position nor the
  decoded size of an attachment (it re-encodes payloads to base64).

``ParsedMessage`` is library-neutral and still close to the wire: Message-ID, In-Reply-To and
References are left as header text; ``email_data`` decides what they mean.
"""

from __future__ import annotations

import codecs
import email.errors
import email.header
import email.policy
import email.utils
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any, NamedTuple

import mailparser

from email_service.errors import MessageUnparseable

logger = logging.getLogger(__name__)

# mail-parser logs header values and file names (at ERROR when a header does not decode). Our
# logs never carry subjects, addresses or file names, so its logger is kept quiet.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)

#: Last resort for octets that are neither UTF-8 nor in the declared charset: windows-1252 is
#: what unlabelled 8-bit mail nearly always is, and it maps all but five octets.
FALLBACK_CHARSET = "cp1252"

#: Declared charsets read as the superset senders really use (as the WHATWG Encoding Standard
#: does): "iso-8859-1" mail carries windows-1252 quotes and euro signs, gb2312 mail GBK
#: characters, shift_jis and euc-kr mail Microsoft's extensions. 8-bit octets under an ASCII
#: label are most often UTF-8. Keys are Python's canonical codec names.
_CHARSET_SUPERSETS = {
    "ascii": "utf-8",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}

#: CRLF followed by white space is folding (RFC 5322 section 2.2.3); unfolding removes the CRLF.
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAKS = re.compile(r"\r\n?")


class Mailbox(NamedTuple):
    """One address: ``name`` is the decoded display name, "" when there is none."""

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """Metadata of one attachment (never its content).

    ``part`` is the MIME part number as IMAP numbers body sections ("1", "2", "1.3"), so
    ``UID FETCH <uid> BODY.PEEK[<part>]`` fetches the content; it is stable for a given
    message. ``name`` is "" when the message gives none. ``size`` is the decoded size in
    bytes. ``content_id`` is the Content-ID header as written (angle brackets and all).
    """

    part: str
    name: str
    content_type: str
    size: int
    content_id: str | None
    is_inline: bool


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What one message says, decoded to text and independent of the parsing library.

    Addresses keep message order; ``from_`` is empty when From is missing or holds no usable
    mailbox, ``sender`` is the Sender header likewise. ``date`` is the Date header in UTC,
    None when missing or invalid. ``message_id`` and ``in_reply_to`` are the unfolded header
    text (first occurrence), None when absent; ``references`` holds the unfolded text of each
    References field (nearly always one). ``headers`` lists every header field in message
    order as (name as written, unfolded value with RFC 2047 words decoded). ``text`` and
    ``html`` join the body parts of that type with "\\n" (line ends normalised to "\\n"), None
    when the message has no such part.
    """

    subject: str
    from_: tuple[Mailbox, ...]
    sender: tuple[Mailbox, ...]
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    date: datetime | None
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None
    attachments: tuple[AttachmentInfo, ...]


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one RFC 5322 message.

    Raises ``MessageUnparseable`` when ``raw`` is not a message at all (no header field before
    the first blank line: empty input, binary junk, a bare body) or when parsing fails.
    """
    if not raw.strip():
        raise MessageUnparseable("empty message")
    try:
        parser = mailparser.MailParser.from_bytes(raw)
        message = parser.message
        if message is None or len(message) == 0:
            raise MessageUnparseable("no header fields: the bytes are not an RFC 5322 message")
        return _extract(parser, message)
    except MessageUnparseable:
        raise
    # The bytes come from anyone who can send mail. Whatever the library or the stdlib raises
    # on them (their own errors, UnicodeError, LookupError for odd charsets, RecursionError on
    # deep nesting, IndexError on broken structure) means this message cannot become an event;
    # it goes to the dead-letter stream instead of stopping the folder.
    except Exception as exc:
        # Only the type: the library's text can quote header values, which are not logged.
        raise MessageUnparseable(f"message does not parse ({type(exc).__name__})") from exc


def _extract(parser: Any, message: Message) -> ParsedMessage:
    hint = _declared_charset(message)
    fields = [(name, str(value)) for name, value in message.raw_items()]
    # (name, unfolded value as text, RFC 2047 words still encoded): address lists are split
    # before their display names are decoded, as a decoded "Doe, J" would split in two.
    texts = [(_wire_text(name, hint), _wire_text(_unfold(value), hint)) for name, value in fields]
    headers = tuple((name, _decode_words(value)) for name, value in texts)
    first = _first_values(headers)
    text_parts, html_parts, attachments = _walk(message)
    return ParsedMessage(
        subject=first.get("subject", "").strip(),
        from_=_addresses(parser.from_, fields, "from", hint),
        sender=_addresses_from_text(_first_values(texts).get("sender", "")),
        to=_addresses(parser.to, fields, "to", hint),
        cc=_addresses(parser.cc, fields, "cc", hint),
        date=_utc(parser.date),
        message_id=first.get("message-id"),
        in_reply_to=first.get("in-reply-to"),
        references=tuple(value for name, value in headers if name.lower() == "references"),
        headers=headers,
        text="\n".join(text_parts) if text_parts else None,
        html="\n".join(html_parts) if html_parts else None,
        attachments=tuple(attachments),
    )


def _first_values(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    return first


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    # Older mail-parser releases gave naive datetimes, already converted to UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- addresses ---


def _addresses(
    parsed: Any, fields: list[tuple[str, str]], name: str, hint: str | None
) -> tuple[Mailbox, ...]:
    """Mailboxes of the first ``name`` field: mail-parser's, unless that field has raw 8-bit
    octets that are not UTF-8, which mail-parser turns into backslash escapes."""
    raw = next((value for field, value in fields if field.lower() == name), None)
    if raw is None:
        return ()
    if _has_undecodable_octets(raw):
        return _addresses_from_text(_wire_text(_unfold(raw), hint))
    return tuple(
        Mailbox(str(display), str(address)) for display, address in parsed or () if address
    )


def _addresses_from_text(value: str) -> tuple[Mailbox, ...]:
    """Mailboxes of header text whose RFC 2047 words are still encoded."""
    if not value.strip():
        return ()
    return tuple(
        Mailbox(_decode_words(display).strip(), address.strip())
        for display, address in email.utils.getaddresses([value])
        if address.strip()
    )


# --- header text ---


def _unfold(value: str) -> str:
    return _FOLDING.sub("", value).replace("\r", "").replace("\n", "").strip()


def _has_undecodable_octets(value: str) -> bool:
    if value.isascii():
        return False
    try:
        value.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _wire_text(value: str, hint: str | None) -> str:
    """Text of a header value whose raw 8-bit octets the stdlib carries as surrogate escapes:
    UTF-8 (RFC 6532) first, then the message's declared body charset, then windows-1252."""
    if value.isascii():
        return value
    octets = value.encode("utf-8", "surrogateescape")
    return _decode_octets(octets, ("utf-8", *([hint] if hint else [])))


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; a word that does not decode is kept as written."""
    if "=?" not in value:
        return value
    try:
        chunks = email.header.decode_header(value)
    except email.errors.HeaderParseError:
        return value
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:
            # decode_header gives the text between encoded words back as raw-unicode-escape.
            out.append(chunk.decode("raw-unicode-escape", "replace"))
        else:
            out.append(_decode_octets(chunk, (_superset(charset), "utf-8")))
    return "".join(out)


# --- charsets ---


def _superset(label: str) -> str:
    try:
        name = codecs.lookup(label.strip().lower().partition("*")[0]).name
    except (LookupError, ValueError):
        return label
    return _CHARSET_SUPERSETS.get(name, name)


def _decode_octets(data: bytes, charsets: Iterable[str]) -> str:
    """Decode with the first charset that takes every octet, else windows-1252 with U+FFFD."""
    for charset in (*charsets, FALLBACK_CHARSET):
        try:
            text = data.decode(charset)
            # A few codecs yield lone surrogates; those are not text and break UTF-8 output.
            text.encode("utf-8")
        except (LookupError, UnicodeError, ValueError):
            continue
        return text
    return data.decode(FALLBACK_CHARSET, "replace")


def _declared_charset(message: Message) -> str | None:
    """The charset of the first text part, a hint for raw 8-bit octets in headers."""
    for part in message.walk():
        if part.get_content_maintype() == "text":
            charset = part.get_content_charset()
            return _superset(charset) if charset else None
    return None


# --- body and attachments ---


def _walk(message: Message) -> tuple[list[str], list[str], list[AttachmentInfo]]:
    """Split the MIME tree into body text, body HTML and attachments, in message order.

    A text/plain or text/html leaf is body unless it has a file name or an attachment
    disposition (its own or a container's: RFC 2183 section 2.9). Every other leaf is an
    attachment, and so is every ``message/*`` part: an attached message is listed whole, its
    text never joins the body. Iterative, so nesting depth costs no stack.
    """
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[AttachmentInfo] = []
    stack: list[tuple[Message, str, bool]] = [(message, "", False)]
    while stack:
        part, number, in_attachment = stack.pop()
        disposition = part.get_content_disposition()
        in_attachment = in_attachment or disposition == "attachment"
        maintype = part.get_content_maintype()
        children = part.get_payload()
        if maintype != "message" and isinstance(children, list):
            prefix = f"{number}." if number else ""
            stack.extend(
                (child, f"{prefix}{index}", in_attachment)
                for index, child in reversed(list(enumerate(children, start=1)))
            )
            continue
        number = number or "1"
        # A multipart whose boundary never occurs is left as one text leaf by the stdlib:
        # its bytes are what the sender wrote, so they are read as plain text.
        content_type = "text/plain" if maintype == "multipart" else part.get_content_type()
        filename = _filename(part)
        if content_type in ("text/plain", "text/html") and not filename and not in_attachment:
            body = _body_text(part)
            (texts if content_type == "text/plain" else htmls).append(body)
            continue
        content_id = part.get("Content-ID")
        content_id = _unfold(_wire_text(str(content_id), None)) if content_id else None
        attachments.append(
            AttachmentInfo(
                part=number,
                name=filename,
                content_type=_wire_text(content_type, None),
                size=_decoded_size(part),
                content_id=content_id or None,
                is_inline=disposition == "inline" or (disposition is None and bool(content_id)),
            )
        )
    return texts, htmls, attachments


def _filename(part: Message) -> str:
    """The file name: RFC 2231 parameters (the stdlib decodes them), then RFC 2047 words,
    which many mailers put in quoted parameters although RFC 2047 section 5 forbids it."""
    value = part.get_filename()
    if not value:
        return ""
    return _decode_words(_wire_text(_unfold(str(value)), None)).strip()


def _body_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        return ""
    declared = part.get_content_charset()
    charsets = (_superset(declared), "utf-8") if declared else ("utf-8",)
    return _LINE_BREAKS.sub("\n", _decode_octets(payload, charsets))


def _decoded_size(part: Message) -> int:
    if not part.is_multipart():
        payload = part.get_payload(decode=True)
        return len(payload) if isinstance(payload, bytes) else 0
    # An attached message (message/rfc822 and kin): its size is the embedded message's,
    # serialised again with CRLF line ends as on the wire; the stdlib keeps no byte offsets.
    crlf = email.policy.compat32.clone(linesep="\r\n")
    size = 0
    for inner in part.get_payload():
        if isinstance(inner, Message):
            try:
                size += len(inner.as_bytes(policy=crlf))
            except (LookupError, UnicodeError, ValueError, TypeError):
                return 0
    return size
