"""What the content endpoints serve of a message, and with which headers (core).

``GET .../messages/{folder}/{uidValidity}/{uid}/raw`` serves the message as the server
stores it (``BODY.PEEK[]``); ``.../parts/{partId}`` one part, its transfer encoding undone
(``BODY.PEEK[<partId>]``). A part id is an IMAP part number, as events give it
(``attachments[].id``, ``ingressSkipReasons[].attachmentId``): any leaf of the message's
BODYSTRUCTURE, an attached message (``message/rfc822``) whole.

Every answer is a download, never a page: ``Content-Disposition: attachment`` with the
file name (RFC 6266: an ASCII fallback and the UTF-8 form), ``X-Content-Type-Options:
nosniff`` and a sandboxing ``Content-Security-Policy``, so HTML or SVG a sender attached
cannot run as the API's origin; a content type that is not a plain ``type/subtype`` token
is served as ``application/octet-stream``. Nothing is cached on the way (``no-store``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from email_service.imap.fetched import MimePart
from email_service.ingest.mime_structure import iter_leaves
from email_service.ingest.parsing import clean_text, filename_from_params

#: An IMAP part number: "1", "2.3"... (RFC 3501 section 6.4.5), at most 32 levels of 6 digits:
#: far deeper than any real message, and a bound on what a path may carry.
PART_ID = re.compile(r"[1-9][0-9]{0,5}(?:\.[1-9][0-9]{0,5}){0,31}")
#: A media type token pair (RFC 6838 section 4.2), lower case as BODYSTRUCTURE gives it.
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_CHARSET = re.compile(r"[A-Za-z0-9!#$%&'+^_`{}~-]{1,40}")
#: Characters kept in the ASCII fallback file name; the rest become "_".
_PLAIN_NAME = re.compile(r"[^A-Za-z0-9 ._()+,=@-]")
#: File names in headers are cut to this many characters: any real name fits.
MAX_NAME_CHARS = 200

#: Headers of every content answer.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, no-store",
}


@dataclass(frozen=True)
class ServedPart:
    """What to fetch (``section``: "" the whole message) and how to decode and label it."""

    section: str
    encoding: str
    content_type: str
    filename: str


def is_part_id(value: str) -> bool:
    return PART_ID.fullmatch(value) is not None


def find_part(structure: MimePart | None, part_id: str) -> ServedPart | None:
    """The leaf numbered ``part_id``, or None when the message has no such part (a message
    that is not multipart has one, "1")."""
    if structure is None:
        return None
    for part, _in_attachment in iter_leaves(structure):
        if part.section == part_id:
            name = clean_text(filename_from_params(part.disposition_params, part.params))
            return ServedPart(
                section=part.section,
                encoding=part.encoding,
                content_type=_served_type(part),
                filename=name or f"part-{part_id}",
            )
    return None


def whole_message(uid: int) -> ServedPart:
    """The message as stored, its bytes unchanged."""
    return ServedPart(
        section="", encoding="8bit", content_type="message/rfc822", filename=f"message-{uid}.eml"
    )


def download_headers(part: ServedPart) -> dict[str, str]:
    """The answer's headers for ``part``."""
    return {
        **DOWNLOAD_HEADERS,
        "Content-Type": part.content_type,
        "Content-Disposition": content_disposition(part.filename),
    }


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` as plain ASCII and, when it is not, RFC 5987's form."""
    name = "".join(ch for ch in filename if ch.isprintable())[:MAX_NAME_CHARS] or "download"
    plain = _PLAIN_NAME.sub("_", name)
    value = f'attachment; filename="{plain}"'
    if plain != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def _served_type(part: MimePart) -> str:
    media = part.content_type if _MEDIA_TYPE.fullmatch(part.content_type) else ""
    if not media:
        return "application/octet-stream"
    charset = part.param("charset")
    if media.startswith("text/") and charset and _CHARSET.fullmatch(charset):
        return f"{media}; charset={charset}"
    return media
