"""A message above the raw size cap, read from its header section and BODYSTRUCTURE (core).

Such a message is never downloaded whole (``IMAP_MAX_RAW_MIME_BYTES``). What the event needs of
it comes from three smaller fetches: the header section (parsed like any message), the
BODYSTRUCTURE (attachments: names, types, sizes, content ids, inline flags, part numbers), and
the body text parts fetched on their own, each cut to what ``IMAP_MAX_BODY_TEXT_BYTES`` can use.

The rules are those of ``parsing`` for a whole message: a text/plain or text/html leaf is body
unless it has a file name or sits in an attachment; every other leaf, and every attached
message, is an attachment; part numbers are IMAP's. Sizes differ in one way: BODYSTRUCTURE
gives the encoded size, so a base64 part's decoded size is estimated (3 octets per 4
characters, less CRLF every 78 characters, as encoders wrap).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from email_service.imap.fetched import FetchedHeaders, MimePart
from email_service.ingest.charsets import CharsetIssue, CharsetLog, decode_octets
from email_service.ingest.parsing import (
    AttachmentInfo,
    ParsedMessage,
    clean_text,
    filename_from_params,
    parse_message,
)
from email_service.ingest.transfer import decode_transfer

#: Body parts fetched on their own per message, at most: each is one more item in the same
#: FETCH command, and the text they give is capped anyway.
MAX_BODY_SECTIONS = 8

#: Octets fetched of a body part per byte of text wanted, by transfer encoding: enough that
#: a part cut by the fetch still yields more text than the cap, so the cap (not the fetch)
#: cuts it and says so. Base64 is 4 characters per 3 octets plus line breaks,
#: quoted-printable at most 3 per octet; and text can shrink by half when decoded (CRLF to
#: LF, UTF-16 to UTF-8).
_WIRE_OCTETS_PER_OCTET = {"base64": 2.8, "quoted-printable": 3.0}
#: The same for parts sent as they are (7bit, 8bit, binary).
_PLAIN_OCTETS_PER_OCTET = 2.0


_LINE_BREAKS = re.compile(r"\r\n?")


@dataclass(frozen=True, slots=True)
class BodySection:
    """A body part to fetch: ``BODY.PEEK[<section>]<0.<max_octets>>``."""

    section: str
    content_type: str
    encoding: str
    charset: str | None
    size: int
    max_octets: int

    @property
    def complete(self) -> bool:
        """Whether the fetch takes the whole part."""
        return self.max_octets >= self.size


def iter_leaves(root: MimePart) -> Iterator[tuple[MimePart, bool]]:
    """Every leaf in message order, with whether it sits inside an attachment."""
    stack = [(root, False)]
    while stack:
        part, in_attachment = stack.pop()
        in_attachment = in_attachment or part.disposition == "attachment"
        if part.children:
            stack.extend((child, in_attachment) for child in reversed(part.children))
        else:
            yield part, in_attachment


def _is_body(part: MimePart, in_attachment: bool) -> bool:
    if part.content_type not in ("text/plain", "text/html") or in_attachment:
        return False
    return not filename_from_params(part.disposition_params, part.params)


def plan_body_sections(root: MimePart, max_text_bytes: int) -> list[BodySection]:
    """The body parts worth fetching: per type, in order, until ``max_text_bytes`` of decoded
    text is covered; each part cut to the octets that can hold what is still wanted."""
    wanted = {"text/plain": max_text_bytes, "text/html": max_text_bytes}
    sections: list[BodySection] = []
    for part, in_attachment in iter_leaves(root):
        if len(sections) >= MAX_BODY_SECTIONS:
            break
        if not _is_body(part, in_attachment) or wanted[part.content_type] <= 0:
            continue
        factor = _WIRE_OCTETS_PER_OCTET.get(part.encoding, _PLAIN_OCTETS_PER_OCTET)
        max_octets = min(part.size, int(wanted[part.content_type] * factor) + 4)
        wanted[part.content_type] -= int(max_octets / factor)
        sections.append(
            BodySection(
                section=part.section,
                content_type=part.content_type,
                encoding=part.encoding,
                charset=part.param("charset"),
                size=part.size,
                max_octets=max(max_octets, 1),
            )
        )
    return sections


def estimated_decoded_size(part: MimePart) -> int:
    if part.encoding == "base64":
        return (part.size - 2 * (part.size // 78)) * 3 // 4
    return part.size


def attachments_from_structure(root: MimePart) -> tuple[AttachmentInfo, ...]:
    attachments = []
    for part, in_attachment in iter_leaves(root):
        if _is_body(part, in_attachment):
            continue
        # The structure's strings carry raw octets as surrogate escapes (for file names):
        # these are text in an event, so they are cleaned as the parser cleans its own.
        content_id = clean_text("".join((part.content_id or "").split())) or None
        attachments.append(
            AttachmentInfo(
                part=part.section,
                name=filename_from_params(part.disposition_params, part.params),
                content_type=clean_text(part.content_type),
                size=estimated_decoded_size(part),
                content_id=content_id,
                is_inline=part.disposition == "inline"
                or (part.disposition is None and bool(content_id)),
            )
        )
    return tuple(attachments)


def parse_without_body(fetched: FetchedHeaders, sections: list[BodySection]) -> ParsedMessage:
    """The ``ParsedMessage`` of a message known by its header section, structure and the
    body ``sections`` fetched of it (``fetched.sections``). Raises ``MessageUnparseable``
    when the header section does not parse."""
    parsed = parse_message(fetched.header)
    issues = parsed.charset_issues
    texts: dict[str, list[str]] = {"text/plain": [], "text/html": []}
    for section in sections:
        octets = fetched.sections.get(section.section)
        if octets is None:
            continue
        text, issues = decode_section_text(
            octets,
            encoding=section.encoding,
            charset=section.charset,
            part=section.section,
            complete=section.section in fetched.complete_sections,
            issues=issues,
        )
        texts[section.content_type].append(text)
    structure = fetched.structure
    return dataclasses.replace(
        parsed,
        text="\n".join(texts["text/plain"]) if texts["text/plain"] else None,
        html="\n".join(texts["text/html"]) if texts["text/html"] else None,
        attachments=attachments_from_structure(structure) if structure else (),
        charset_issues=issues,
    )


def decode_section_text(
    octets: bytes,
    *,
    encoding: str,
    charset: str | None,
    part: str,
    complete: bool,
    issues: Sequence[CharsetIssue] = (),
) -> tuple[str, tuple[CharsetIssue, ...]]:
    """Text of one body part fetched on its own; ``complete`` is false for a prefix.

    Returns the text (line ends normalised to "\\n") and ``issues`` plus any found here.
    """
    log = CharsetLog(list(issues))
    text = decode_octets(
        decode_transfer(octets, encoding), charset, part=part, log=log, final=complete
    )
    return clean_text(_LINE_BREAKS.sub("\n", text)), tuple(log.issues)
