"""What ``UID FETCH`` returned for one message, library-neutral (core: pure conversions).

``imap_session`` issues the commands; the conversions from imapclient's response dictionaries
(bytes keys, nested tuples) into these types are pure functions here, tested on literal
responses. Two shapes, by the message's ``RFC822.SIZE`` against ``IMAP_MAX_RAW_MIME_BYTES``:

- ``FetchedMessage``: the whole message (``BODY.PEEK[]``);
- ``FetchedHeaders``: a message too large to download whole: its header section, its
  BODYSTRUCTURE as a ``MimePart`` tree, and later the body text parts fetched on their own,
  each cut to a bound (``sections``).

Both carry INTERNALDATE, FLAGS, RFC822.SIZE, and X-GM-MSGID when the server is Gmail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any


@dataclass(frozen=True, slots=True)
class MimePart:
    """One node of a BODYSTRUCTURE (RFC 3501 section 7.4.2).

    ``section`` is the IMAP part number ("1", "1.2"); the root of a multipart message is "".
    ``content_type`` is lower case ("text/plain"); parameter names are lower case. ``size``
    is the body's size as transferred (still base64 or quoted-printable encoded).
    ``children`` are a multipart's parts; an attached message (``message/rfc822``) is a leaf.
    """

    section: str
    content_type: str
    params: tuple[tuple[str, str], ...] = ()
    content_id: str | None = None
    encoding: str = "7bit"
    size: int = 0
    disposition: str | None = None
    disposition_params: tuple[tuple[str, str], ...] = ()
    children: tuple[MimePart, ...] = ()

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.params if key == name), None)


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """A message downloaded whole."""

    uid: int
    raw: bytes
    internal_date: datetime | None
    flags: tuple[str, ...]
    size: int
    gmail_msgid: int | None = None


@dataclass(frozen=True, slots=True)
class FetchedHeaders:
    """A message above the raw size cap: everything but its body.

    ``sections`` maps a body part number to the octets fetched of it (at most the bound
    asked for); ``complete_sections`` names those fetched to their end.
    """

    uid: int
    header: bytes
    structure: MimePart | None
    internal_date: datetime | None
    flags: tuple[str, ...]
    size: int
    gmail_msgid: int | None = None
    sections: Mapping[str, bytes] = field(default_factory=dict)
    complete_sections: frozenset[str] = frozenset()


Fetched = FetchedMessage | FetchedHeaders


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return "" if value is None else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _common(data: Mapping[bytes, Any], fallback_size: int) -> dict[str, Any]:
    internal = data.get(b"INTERNALDATE")
    if isinstance(internal, datetime) and internal.tzinfo is None:
        internal = internal.replace(tzinfo=UTC)
    size = _int(data.get(b"RFC822.SIZE"))
    return {
        "internal_date": _plain_timezone(internal) if isinstance(internal, datetime) else None,
        "flags": tuple(_text(flag) for flag in data.get(b"FLAGS", ())),
        "size": fallback_size if size is None else size,
        "gmail_msgid": _int(data.get(b"X-GM-MSGID")),
    }


def message_from_response(uid: int, data: Mapping[bytes, Any]) -> FetchedMessage | None:
    """The message in one FETCH response item; None when the server left its body out."""
    raw = data.get(b"BODY[]")
    if raw is None:
        return None
    raw = bytes(raw)
    return FetchedMessage(uid=uid, raw=raw, **_common(data, len(raw)))


def headers_from_response(uid: int, data: Mapping[bytes, Any]) -> FetchedHeaders | None:
    """The header section and structure in one FETCH response item; None when missing."""
    header = data.get(b"BODY[HEADER]")
    if header is None:
        return None
    structure = data.get(b"BODYSTRUCTURE")
    return FetchedHeaders(
        uid=uid,
        header=bytes(header),
        structure=structure_from_response(structure) if structure else None,
        **_common(data, 0),
    )


def sizes_from_response(response: Mapping[int, Mapping[bytes, Any]]) -> dict[int, int]:
    """UID to RFC822.SIZE, for the UIDs the server answered."""
    sizes = {}
    for uid, data in response.items():
        size = _int(data.get(b"RFC822.SIZE"))
        if size is not None:
            sizes[int(uid)] = size
    return sizes


@dataclass(frozen=True, slots=True)
class MessageLayout:
    """A message's RFC822.SIZE and BODYSTRUCTURE (None when the server gave none)."""

    size: int | None
    structure: MimePart | None


def layout_from_response(data: Mapping[bytes, Any]) -> MessageLayout:
    structure = data.get(b"BODYSTRUCTURE")
    return MessageLayout(
        size=_int(data.get(b"RFC822.SIZE")),
        structure=structure_from_response(structure) if structure else None,
    )


def chunk_from_response(data: Mapping[bytes, Any], section: str, offset: int) -> bytes:
    """The octets of a ``BODY.PEEK[<section>]<offset.n>`` answer: empty past the end (the
    server answers an empty string or NIL there); a server that ignored the range and sent
    the whole section gives it whole (only at offset 0, else nothing more)."""
    value = data.get(f"BODY[{section}]<{offset}>".encode("ascii"))
    if value is None and offset == 0:
        value = data.get(f"BODY[{section}]".encode("ascii"))
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""


def section_key(section: str) -> bytes:
    """The response key of ``BODY.PEEK[<section>]<0.n>``."""
    return f"BODY[{section}]<0>".encode("ascii")


def structure_from_response(node: Any, section: str = "") -> MimePart:
    """Our tree for imapclient's BODYSTRUCTURE (nested tuples; a multipart's first element is
    the list of its parts). Missing or odd fields give empty values, never an error: servers
    disagree in the details and this only feeds metadata."""
    if isinstance(node, Sequence) and node and isinstance(node[0], list):
        prefix = f"{section}." if section else ""
        children = tuple(
            structure_from_response(child, f"{prefix}{index}")
            for index, child in enumerate(node[0], start=1)
        )
        subtype = _text(node[1]).lower() if len(node) > 1 else "mixed"
        disposition, disposition_params = _disposition(node[3] if len(node) > 3 else None)
        return MimePart(
            section=section,
            content_type=f"multipart/{subtype}",
            params=_params(node[2] if len(node) > 2 else None),
            disposition=disposition,
            disposition_params=disposition_params,
            children=children,
        )
    fields = list(node) if isinstance(node, Sequence) else []
    fields += [None] * (12 - len(fields))
    maintype, subtype = _text(fields[0]).lower(), _text(fields[1]).lower()
    # Extension data follows the basic fields: after "lines" for text/*, after envelope,
    # body and lines for message/rfc822 (RFC 3501 section 7.4.2).
    if maintype == "text":
        extension = 8
    else:
        extension = 10 if (maintype, subtype) == ("message", "rfc822") else 7
    disposition, disposition_params = _disposition(
        fields[extension + 1] if len(fields) > extension + 1 else None
    )
    content_id = _text(fields[3]).strip() or None
    return MimePart(
        section=section or "1",
        content_type=f"{maintype or 'application'}/{subtype or 'octet-stream'}",
        params=_params(fields[2]),
        content_id=content_id,
        encoding=_text(fields[5]).lower() or "7bit",
        size=_int(fields[6]) or 0,
        disposition=disposition,
        disposition_params=disposition_params,
    )


def _params(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Sequence) or isinstance(value, bytes | str):
        return ()
    items = list(value)
    return tuple(
        (_text(items[i]).lower(), _text(items[i + 1])) for i in range(0, len(items) - 1, 2)
    )


def _disposition(value: Any) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    if not isinstance(value, Sequence) or isinstance(value, bytes | str) or not value:
        return None, ()
    name = _text(value[0]).lower() or None
    return name, _params(value[1] if len(value) > 1 else None)


def _plain_timezone(moment: datetime) -> datetime:
    """``moment`` with a standard-library tzinfo (imapclient's ``FixedOffset`` cannot be
    pickled, and fetched messages are sent to parse processes)."""
    offset = moment.utcoffset()
    if offset is None:
        return moment
    return moment.replace(tzinfo=timezone(offset))
