"""A message known by its header section, BODYSTRUCTURE and a few fetched text parts."""

from __future__ import annotations

import base64

import pytest

from email_service.errors import MessageUnparseable
from email_service.imap.fetched import FetchedHeaders, MimePart
from email_service.ingest.charsets import CharsetIssue
from email_service.ingest.mime_structure import (
    MAX_BODY_SECTIONS,
    BodySection,
    attachments_from_structure,
    estimated_decoded_size,
    parse_without_body,
    plan_body_sections,
)
from email_service.ingest.parsing import AttachmentInfo, Mailbox

TEXT = MimePart("1.1", "text/plain", (("charset", "iso-8859-1"),), None, "base64", 80_000)
HTML = MimePart("1.2", "text/html", (("charset", "utf-8"),), None, "quoted-printable", 900)
NAMED_TEXT = MimePart(
    "2", "text/plain", (), None, "7bit", 50, "attachment", (("filename", "notes.txt"),)
)
PDF = MimePart(
    "3",
    "application/pdf",
    (("name", "=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="),),
    None,
    "base64",
    7800,
)
LOGO = MimePart("4", "image/png", (), "<logo@x>", "base64", 780)
FORWARDED = MimePart("5", "message/rfc822", (), None, "7bit", 120, "attachment")
ROOT = MimePart(
    "",
    "multipart/mixed",
    children=(
        MimePart("1", "multipart/alternative", children=(TEXT, HTML)),
        NAMED_TEXT,
        PDF,
        LOGO,
        FORWARDED,
    ),
)


def test_body_sections_are_the_unnamed_text_parts_cut_to_what_the_cap_can_use() -> None:
    assert plan_body_sections(ROOT, max_text_bytes=10_000) == [
        BodySection("1.1", "text/plain", "base64", "iso-8859-1", 80_000, 28_004),
        BodySection("1.2", "text/html", "quoted-printable", "utf-8", 900, 900),
    ]


def test_body_sections_stop_when_the_cap_is_covered_and_at_a_count() -> None:
    many = MimePart(
        "",
        "multipart/mixed",
        children=tuple(MimePart(str(n), "text/plain", (), None, "7bit", 100) for n in range(1, 30)),
    )

    # Each 100-octet part counts as at least 50 bytes of text (it may shrink by half).
    assert [s.section for s in plan_body_sections(many, max_text_bytes=120)] == ["1", "2", "3"]
    assert len(plan_body_sections(many, max_text_bytes=10**6)) == MAX_BODY_SECTIONS


def test_attachments_from_structure() -> None:
    assert attachments_from_structure(ROOT) == (
        AttachmentInfo("2", "notes.txt", "text/plain", 50, None, False),
        AttachmentInfo("3", "résumé.pdf", "application/pdf", 5700, None, False),
        AttachmentInfo("4", "", "image/png", 570, "<logo@x>", True),
        AttachmentInfo("5", "", "message/rfc822", 120, None, False),
    )


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (MimePart("1", "application/pdf", encoding="base64", size=78 * 100), 57 * 100),
        (MimePart("1", "application/pdf", encoding="binary", size=1000), 1000),
    ],
    ids=["base64-less-line-breaks", "unencoded-as-is"],
)
def test_estimated_decoded_size(part: MimePart, expected: int) -> None:
    assert estimated_decoded_size(part) == expected


HEADER = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.de>\r\nTo: a@example.com\r\n"
    b"Subject: big one\r\nMessage-ID: <big@example.de>\r\n\r\n"
)


def test_parse_without_body_reads_the_fetched_parts() -> None:
    text = base64.encodebytes("Grüße aus Köln\r\n".encode("latin-1") * 3)
    fetched = FetchedHeaders(
        uid=5,
        header=HEADER,
        structure=ROOT,
        internal_date=None,
        flags=(),
        size=90_000,
        sections={"1.1": text[:30], "1.2": b"<p>caf=C3=A9</p>"},
        complete_sections=frozenset({"1.2"}),
    )

    parsed = parse_without_body(fetched, plan_body_sections(ROOT, 10_000))

    assert parsed.from_ == (Mailbox("Jürgen", "j@example.de"),)
    assert (parsed.subject, parsed.message_id) == ("big one", "<big@example.de>")
    # 30 characters of base64: 7 groups (21 octets) and 2 characters holding one more.
    assert parsed.text == "Grüße aus Köln\nGrüße "
    assert parsed.html == "<p>café</p>"
    assert [a.part for a in parsed.attachments] == ["2", "3", "4", "5"]
    assert parsed.charset_issues == ()


def test_parse_without_body_flags_a_mislabelled_part() -> None:
    fetched = FetchedHeaders(
        uid=5,
        header=HEADER,
        structure=MimePart("1", "text/plain", (("charset", "utf-8"),), None, "8bit", 5),
        internal_date=None,
        flags=(),
        size=90_000,
        sections={"1": b"caf\xe9"},
        complete_sections=frozenset({"1"}),
    )

    parsed = parse_without_body(fetched, plan_body_sections(fetched.structure, 100))  # type: ignore[arg-type]

    assert parsed.text == "café"
    assert parsed.charset_issues == (CharsetIssue("1", "utf-8", "cp1252", "wrong_charset"),)


def test_parse_without_body_needs_a_header_section() -> None:
    fetched = FetchedHeaders(5, b"\r\n", None, None, (), 90_000)

    with pytest.raises(MessageUnparseable):
        parse_without_body(fetched, [])
