"""Core (pure: message bytes in, ParsedMessage out; no IO): the only module importing mailparser.

What comes from mail-parser, and what from the standard library's ``email`` package and why:

- The standard library's feed parser builds the MIME tree, fed in slices: parsing the bytes
  in one piece (``message_from_bytes``, which mail-parser uses) copies them into a UCS-4
  ``StringIO``, about 8 times the message in memory; fed in slices it is about 3 times.
- mail-parser parses only the header section (it would otherwise re-encode every attachment
  we never send): the From/To/Cc lists (it decodes RFC 2047 display names in their lexical
  context, so ``=?utf-8?q?Doe=2C_J?= <j@x>`` stays one mailbox, and it drops ambiguous items
  instead of inventing mailboxes) and the Date header (UTC, None when invalid).
- The stdlib tree mail-parser builds (``MailParser.message``) is read here for the rest, where
  mail-parser is wrong for us: it drops the non-UTF-8 octets of raw 8-bit headers ("café" in
  windows-1252 comes back "caf") and escapes them in display names; it names unnamed
  attachments with random strings (the same message would give different events); it merges
  the text of attached messages into the body; and it keeps neither the MIME position nor the
  decoded size of an attachment (it re-encodes payloads to base64).

``ParsedMessage`` is library-neutral and still close to the wire: Message-ID, In-Reply-To and
References are left as header text; ``email_data`` decides what they mean. Text that was not
decoded as its label promised is listed in ``charset_issues`` (``ingest/charsets.py``).

For a message too large to download whole, ``sync.fetching`` fetches the header section alone
and the event builds the body from BODYSTRUCTURE and partial fetches (``mime_structure``), with
``filename_from_params`` from here so that names decode the same either way.
"""

from __future__ import annotations

import email.errors
import email.feedparser
import email.header
import email.policy
import email.utils
import logging
import quopri
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any, NamedTuple

import mailparser

from email_service.errors import MessageUnparseable
from email_service.ingest.charsets import CharsetIssue, CharsetLog, canonical, decode_octets

logger = logging.getLogger(__name__)

# mail-parser logs header values and file names (at ERROR when a header does not decode). Our
# logs never carry subjects, addresses or file names, so its logger is kept quiet.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)

#: Slice fed to the stdlib parser at a time: large enough to cost nothing per slice, small
#: enough that the decoded copy of one slice is noise next to the message.
FEED_SLICE_BYTES = 1 << 20

#: Payloads longer than this (characters) have their decoded size counted slice by slice.
SIZE_BY_SLICES_ABOVE = 1 << 20
#: Characters per slice when counting.
SIZE_SLICE_CHARS = 1 << 20

#: CRLF followed by white space is folding (RFC 5322 section 2.2.3); unfolding removes the CRLF.
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAKS = re.compile(r"\r\n?")
#: The blank line that ends the header section.
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_NOT_BASE64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]")


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
    mailbox, ``sender``, ``reply_to`` and ``return_path`` are those headers likewise (the
    sender's fallbacks, in that order). ``date`` is the Date header in UTC,
    None when missing or invalid. ``message_id`` and ``in_reply_to`` are the unfolded header
    text (first occurrence), None when absent; ``references`` holds the unfolded text of each
    References field (nearly always one). ``headers`` lists every header field in message
    order as (name as written, unfolded value with RFC 2047 words decoded). ``text`` and
    ``html`` join the body parts of that type with "\\n" (line ends normalised to "\\n"), None
    when the message has no such part. ``charset_issues`` lists text not decoded as labelled.
    """

    subject: str
    from_: tuple[Mailbox, ...]
    sender: tuple[Mailbox, ...]
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    reply_to: tuple[Mailbox, ...]
    return_path: tuple[Mailbox, ...]
    date: datetime | None
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None
    attachments: tuple[AttachmentInfo, ...]
    charset_issues: tuple[CharsetIssue, ...] = ()


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one RFC 5322 message.

    Raises ``MessageUnparseable`` when ``raw`` is not a message at all (no header field before
    the first blank line: empty input, binary junk, a bare body) or when parsing fails.
    """
    if not raw.strip():
        raise MessageUnparseable("empty message")
    try:
        message = _parse_tree(raw)
        if len(message) == 0:
            raise MessageUnparseable("no header fields: the bytes are not an RFC 5322 message")
        parser = mailparser.MailParser.from_bytes(header_section(raw))
        return _Extractor(message).extract(parser)
    except MessageUnparseable:
        raise
    # The bytes come from anyone who can send mail. Whatever the library or the stdlib raises
    # on them (their own errors, UnicodeError, LookupError for odd charsets, RecursionError on
    # deep nesting, IndexError on broken structure) means this message cannot become an event;
    # it goes to the dead-letter stream instead of stopping the folder.
    except Exception as exc:
        # Only the type: the library's text can quote header values, which are not logged.
        raise MessageUnparseable(f"message does not parse ({type(exc).__name__})") from exc


def header_section(raw: bytes) -> bytes:
    """The header fields of ``raw`` with the blank line that ends them (all of it if none)."""
    match = _HEADER_END.search(raw)
    return raw if match is None else raw[: match.end()]


def _parse_tree(raw: bytes) -> Message:
    feed = email.feedparser.BytesFeedParser(policy=email.policy.compat32)
    for start in range(0, len(raw), FEED_SLICE_BYTES):
        feed.feed(raw[start : start + FEED_SLICE_BYTES])
    message = feed.close()
    if not isinstance(message, Message):  # pragma: no cover - the stdlib's own contract
        raise MessageUnparseable("the parser returned no message")
    return message


def _first_values(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    return first


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    # Older mail-parser releases gave naive datetimes, already converted to UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it: no UTC time
        return None


def _unfold(value: str) -> str:
    return _FOLDING.sub("", value).replace("\r", "").replace("\n", "").strip()


def clean_text(value: str) -> str:
    """``value`` without lone surrogates (from raw-unicode-escape, or a library's escapes),
    which no UTF-8 encoder takes, and with NUL as U+FFFD: PostgreSQL text and jsonb, where
    consumers keep mail, refuse NUL."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _has_undecodable_octets(value: str) -> bool:
    if value.isascii():
        return False
    try:
        value.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


class _Extractor:
    """Reads one parsed tree; collects the charset issues found on the way."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.log = CharsetLog()
        self.hint = _declared_charset(message)

    def extract(self, parser: Any) -> ParsedMessage:
        fields = [(name, str(value)) for name, value in self.message.raw_items()]
        # (name, unfolded value as text, RFC 2047 words still encoded): address lists are
        # split before their display names are decoded, as a decoded "Doe, J" would split.
        texts = [(self.wire_text(name), self.wire_text(_unfold(value))) for name, value in fields]
        headers = tuple((name, clean_text(self.decode_words(value))) for name, value in texts)
        first = _first_values(headers)
        text_parts, html_parts, attachments = self.walk()
        first_texts = _first_values(texts)
        return ParsedMessage(
            subject=first.get("subject", "").strip(),
            from_=self.addresses(parser.from_, fields, "from"),
            sender=self.addresses_from_text(first_texts.get("sender", "")),
            to=self.addresses(parser.to, fields, "to"),
            cc=self.addresses(parser.cc, fields, "cc"),
            reply_to=self.addresses_from_text(first_texts.get("reply-to", "")),
            return_path=self.addresses_from_text(first_texts.get("return-path", "")),
            date=_utc(parser.date),
            message_id=first.get("message-id"),
            in_reply_to=first.get("in-reply-to"),
            references=tuple(value for name, value in headers if name.lower() == "references"),
            headers=headers,
            text="\n".join(text_parts) if text_parts else None,
            html="\n".join(html_parts) if html_parts else None,
            attachments=tuple(attachments),
            charset_issues=tuple(self.log.issues),
        )

    # --- addresses ---

    def addresses(
        self, parsed: Any, fields: list[tuple[str, str]], name: str
    ) -> tuple[Mailbox, ...]:
        """Mailboxes of the first ``name`` field: mail-parser's, unless that field has raw 8-bit
        octets that are not UTF-8, which mail-parser turns into backslash escapes."""
        raw = next((value for field, value in fields if field.lower() == name), None)
        if raw is None:
            return ()
        if _has_undecodable_octets(raw):
            return self.addresses_from_text(self.wire_text(_unfold(raw)))
        return tuple(
            Mailbox(clean_text(str(display)), clean_text(str(address)))
            for display, address in parsed or ()
            if address
        )

    def addresses_from_text(self, value: str) -> tuple[Mailbox, ...]:
        """Mailboxes of header text whose RFC 2047 words are still encoded."""
        if not value.strip():
            return ()
        return tuple(
            Mailbox(self.decode_words(display).strip(), address.strip())
            for display, address in email.utils.getaddresses([value])
            if address.strip()
        )

    # --- header text ---

    def wire_text(self, value: str) -> str:
        """Text of a header value whose raw 8-bit octets the stdlib carries as surrogate
        escapes: UTF-8 (RFC 6532) first, then the message's body charset, then windows-1252."""
        if value.isascii():
            return value
        octets = value.encode("utf-8", "surrogateescape")
        return decode_octets(octets, None, part="headers", log=self.log, hint=self.hint)

    def decode_words(self, value: str) -> str:
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
                # decode_header gives the text between encoded words as raw-unicode-escape.
                out.append(chunk.decode("raw-unicode-escape", "replace"))
            else:
                out.append(decode_octets(chunk, charset, part="headers", log=self.log))
        return clean_text("".join(out))

    # --- body and attachments ---

    def walk(self) -> tuple[list[str], list[str], list[AttachmentInfo]]:
        """Split the MIME tree into body text, body HTML and attachments, in message order.

        A text/plain or text/html leaf is body unless it has a file name or an attachment
        disposition (its own or a container's: RFC 2183 section 2.9). Every other leaf is an
        attachment, and so is every ``message/*`` part: an attached message is listed whole,
        its text never joins the body. Iterative, so nesting depth costs no stack.
        """
        texts: list[str] = []
        htmls: list[str] = []
        attachments: list[AttachmentInfo] = []
        stack: list[tuple[Message, str, bool]] = [(self.message, "", False)]
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
            filename = self.filename(part)
            if content_type in ("text/plain", "text/html") and not filename and not in_attachment:
                body = self.body_text(part, number)
                (texts if content_type == "text/plain" else htmls).append(body)
                continue
            content_id = part.get("Content-ID")
            content_id = _unfold(self.wire_text(str(content_id))) if content_id else None
            attachments.append(
                AttachmentInfo(
                    part=number,
                    name=filename,
                    content_type=self.wire_text(content_type),
                    size=_decoded_size(part),
                    content_id=content_id or None,
                    is_inline=disposition == "inline" or (disposition is None and bool(content_id)),
                )
            )
        return texts, htmls, attachments

    def filename(self, part: Message) -> str:
        """The file name: RFC 2231 parameters (the stdlib decodes them), then RFC 2047 words,
        which many mailers put in quoted parameters although RFC 2047 section 5 forbids it."""
        value = part.get_filename()
        if not value:
            return ""
        return self.decode_words(self.wire_text(_unfold(str(value)))).strip()

    def body_text(self, part: Message, number: str) -> str:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            return ""
        text = decode_octets(payload, _charset_param(part), part=number, log=self.log)
        return clean_text(_LINE_BREAKS.sub("\n", text))


def _charset_param(part: Message) -> str | None:
    """The charset parameter as written (``get_content_charset`` would drop an RFC 2231 one
    it cannot look up, hiding the label from the issue we record)."""
    value = part.get_param("charset")
    if isinstance(value, tuple):  # RFC 2231: (charset, language, value)
        value = value[2]
    return str(value).strip() or None if value else None


def _declared_charset(message: Message) -> str | None:
    """The charset of the first text part, a hint for raw 8-bit octets in headers."""
    stack = [message]
    while stack:  # iterative: Message.walk recurses once per nesting level
        part = stack.pop()
        children = part.get_payload()
        if part.is_multipart() and isinstance(children, list):
            stack.extend(reversed([c for c in children if isinstance(c, Message)]))
        elif part.get_content_maintype() == "text":
            declared = _charset_param(part)
            return declared if declared and canonical(declared) else None
    return None


def _decoded_size(part: Message) -> int:
    if not part.is_multipart():
        text = part.get_payload()
        if isinstance(text, str) and len(text) > SIZE_BY_SLICES_ABOVE:
            return _decoded_size_by_slices(text, str(part.get("Content-Transfer-Encoding", "")))
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
            except (LookupError, UnicodeError, ValueError, TypeError, RecursionError):
                return 0
    return size


def _decoded_size_by_slices(text: str, encoding: str) -> int:
    """The decoded size of a large payload without a decoded copy of it (``get_payload(
    decode=True)`` holds about three). Base64: every 4 alphabet characters are 3 octets, as a
    forgiving decoder reads them; quoted-printable is decoded a slice of whole lines at a time.
    """
    kind = encoding.strip().lower()
    size = 0
    start = 0
    while start < len(text):
        end = min(len(text), start + SIZE_SLICE_CHARS)
        if kind == "quoted-printable" and end < len(text):
            end = text.find("\n", end) + 1 or len(text)
        octets = text[start:end].encode("ascii", "surrogateescape")
        if kind == "base64":
            size += len(_NOT_BASE64_ALPHABET.sub(b"", octets))
        elif kind == "quoted-printable":
            size += len(quopri.decodestring(octets))
        else:
            size += len(octets)
        start = end
    return size * 3 // 4 if kind == "base64" else size


def part_contents(raw: bytes, wanted: Iterable[str]) -> dict[str, bytes]:
    """The decoded bytes of the parts numbered ``wanted`` (IMAP part numbers, as
    ``AttachmentInfo.part``); an attached message is given whole. Unknown numbers are left
    out."""
    remaining = set(wanted)
    found: dict[str, bytes] = {}
    if not remaining:
        return found
    stack: list[tuple[Message, str]] = [(_parse_tree(raw), "")]
    while stack and remaining:
        part, number = stack.pop()
        children = part.get_payload()
        if part.get_content_maintype() != "message" and isinstance(children, list):
            prefix = f"{number}." if number else ""
            stack.extend((child, f"{prefix}{index}") for index, child in enumerate(children, 1))
            continue
        number = number or "1"
        if number not in remaining:
            continue
        remaining.discard(number)
        if isinstance(children, list):  # message/*: the attached message, as written
            found[number] = b"".join(
                inner.as_bytes(policy=email.policy.compat32)
                for inner in children
                if isinstance(inner, Message)
            )
        else:
            payload = part.get_payload(decode=True)
            found[number] = payload if isinstance(payload, bytes) else b""
    return found


# --- parts described by BODYSTRUCTURE (messages above the raw size cap) ---


def filename_from_params(
    disposition_params: Sequence[tuple[str, str]], type_params: Sequence[tuple[str, str]]
) -> str:
    """The file name of a part described by its parameters (as BODYSTRUCTURE lists them):
    decoded exactly as ``parse_message`` decodes a part's own header fields, raw 8-bit
    octets included (the values carry them as surrogate escapes)."""
    lines = b""
    if disposition_params:
        lines += b"Content-Disposition: attachment" + _param_octets(disposition_params)
    if type_params:
        lines += b"Content-Type: application/octet-stream" + _param_octets(type_params)
    part = _parse_tree(lines + b"\r\n")
    return _Extractor(part).filename(part)


def _param_octets(params: Sequence[tuple[str, str]]) -> bytes:
    text = "".join(
        f'; {_one_line(name)}="{email.utils.quote(_one_line(value))}"' for name, value in params
    )
    return text.encode("utf-8", "surrogateescape") + b"\r\n"


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")
