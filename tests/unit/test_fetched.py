"""FETCH responses into our types: literal server bytes through imapclient's own parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from imapclient.response_parser import parse_fetch_response

from email_service.imap.fetched import (
    FetchedMessage,
    MimePart,
    headers_from_response,
    message_from_response,
    section_key,
    sizes_from_response,
    structure_from_response,
)

#: A BODYSTRUCTURE as Dovecot writes it: related(alternative(text, html), inline image), a PDF
#: with RFC 2231 and RFC 2047 names, an attached message (whose inner text stays inside it).
STRUCTURE = (
    b'(((("text" "plain" ("charset" "utf-8") NIL NIL "base64" 1782 23 NIL NIL NIL NIL)'
    b'("text" "html" ("charset" "utf-8") NIL NIL "7bit" 11 1 NIL NIL NIL NIL) "alternative"'
    b' ("boundary" "b1") NIL NIL NIL)("image" "png" ("name" "logo.png") "<logo@x>" NIL'
    b' "base64" 4000 NIL ("inline" NIL) NIL NIL) "related" ("boundary" "b2") NIL NIL NIL)'
    b'("application" "pdf" ("name" "=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=") NIL NIL "base64" 6844'
    b' NIL ("attachment" ("filename*" "utf-8\'\'r%C3%A9sum%C3%A9.pdf")) NIL NIL)'
    b'("message" "rfc822" NIL NIL NIL "7bit" 120 ("Mon, 1 Jan 2024 00:00:00 +0000" "inner"'
    b' NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit"'
    b' 10 1 NIL NIL NIL NIL) 6 NIL ("attachment" NIL) NIL NIL) "mixed" ("boundary" "b0") NIL'
    b" NIL NIL)"
)


def fetch_response(*lines: Any) -> dict[int, dict[bytes, Any]]:
    return dict(parse_fetch_response(list(lines), normalise_times=False))


def test_bodystructure_becomes_a_tree_with_imap_part_numbers() -> None:
    data = fetch_response(b"1 (UID 7 BODYSTRUCTURE " + STRUCTURE + b")")[7]

    root = structure_from_response(data[b"BODYSTRUCTURE"])

    text = MimePart("1.1.1", "text/plain", (("charset", "utf-8"),), None, "base64", 1782)
    html = MimePart("1.1.2", "text/html", (("charset", "utf-8"),), None, "7bit", 11)
    image = MimePart(
        "1.2", "image/png", (("name", "logo.png"),), "<logo@x>", "base64", 4000, "inline"
    )
    pdf = MimePart(
        "2",
        "application/pdf",
        (("name", "=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="),),
        None,
        "base64",
        6844,
        "attachment",
        (("filename*", "utf-8''r%C3%A9sum%C3%A9.pdf"),),
    )
    attached = MimePart("3", "message/rfc822", (), None, "7bit", 120, "attachment")
    assert root == MimePart(
        "",
        "multipart/mixed",
        (("boundary", "b0"),),
        children=(
            MimePart(
                "1",
                "multipart/related",
                (("boundary", "b2"),),
                children=(
                    MimePart(
                        "1.1",
                        "multipart/alternative",
                        (("boundary", "b1"),),
                        children=(text, html),
                    ),
                    image,
                ),
            ),
            pdf,
            attached,
        ),
    )
    assert text.param("charset") == "utf-8" and pdf.param("charset") is None


@pytest.mark.parametrize(
    ("structure", "expected"),
    [
        pytest.param(
            b'("TEXT" "PLAIN" NIL NIL NIL "QUOTED-PRINTABLE" 50 2 NIL NIL NIL NIL)',
            MimePart("1", "text/plain", (), None, "quoted-printable", 50),
            id="single-part-is-section-1",
        ),
        pytest.param(
            b'("application" "octet-stream" NIL NIL NIL "base64" 10)',
            MimePart("1", "application/octet-stream", (), None, "base64", 10),
            id="no-extension-data",
        ),
        pytest.param(
            b"(NIL NIL NIL NIL NIL NIL NIL)",
            MimePart("1", "application/octet-stream", (), None, "7bit", 0),
            id="all-nil",
        ),
    ],
)
def test_odd_bodystructures_give_defaults_not_errors(structure: bytes, expected: MimePart) -> None:
    data = fetch_response(b"1 (UID 1 BODYSTRUCTURE " + structure + b")")[1]

    assert structure_from_response(data[b"BODYSTRUCTURE"]) == expected


def test_whole_message_with_gmail_id_and_zone() -> None:
    data = fetch_response(
        (
            b'1 (UID 7 RFC822.SIZE 5 INTERNALDATE "02-Jan-2024 10:00:00 +0100" '
            b"FLAGS (\\Seen $label) X-GM-MSGID 1278455344230334865 BODY[] {5}",
            b"hello",
        ),
        b")",
    )[7]

    assert message_from_response(7, data) == FetchedMessage(
        uid=7,
        raw=b"hello",
        internal_date=datetime(2024, 1, 2, 10, tzinfo=timezone(timedelta(hours=1))),
        flags=("\\Seen", "$label"),
        size=5,
        gmail_msgid=1278455344230334865,
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b"1 (UID 3 RFC822.SIZE 10)", None, id="no-body"),
        pytest.param(
            (b"1 (UID 3 BODY[] {2}", b"hi"),
            FetchedMessage(3, b"hi", None, (), 2),
            id="no-size-or-date-uses-length",
        ),
    ],
)
def test_whole_message_fallbacks(line: Any, expected: FetchedMessage | None) -> None:
    lines = [line, b")"] if isinstance(line, tuple) else [line]
    assert message_from_response(3, fetch_response(*lines)[3]) == expected


def test_header_fetch() -> None:
    data = fetch_response(
        (
            b'1 (UID 9 RFC822.SIZE 90000000 INTERNALDATE "02-Jan-2024 10:00:00 +0000" FLAGS ()'
            b' BODYSTRUCTURE ("text" "plain" NIL NIL NIL "8bit" 89999000 1 NIL NIL NIL NIL)'
            b" BODY[HEADER] {18}",
            b"Subject: big\r\n\r\n\r\n",
        ),
        b")",
    )[9]

    headers = headers_from_response(9, data)

    assert headers is not None
    assert (headers.uid, headers.header, headers.size) == (9, b"Subject: big\r\n\r\n\r\n", 90000000)
    assert headers.internal_date == datetime(2024, 1, 2, 10, tzinfo=UTC)
    assert headers.structure == MimePart("1", "text/plain", (), None, "8bit", 89999000)
    assert headers_from_response(9, {b"RFC822.SIZE": 1}) is None


def test_sizes_and_section_keys() -> None:
    response = fetch_response(b"1 (UID 4 RFC822.SIZE 100)", b"2 (UID 6 RFC822.SIZE 7)")
    partial = fetch_response((b"1 (UID 4 BODY[1.2]<0> {3}", b"abc"), b")")

    assert sizes_from_response(response) == {4: 100, 6: 7}
    assert partial[4][section_key("1.2")] == b"abc"
