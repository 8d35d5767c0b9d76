"""parse_message on literal RFC 5322 messages: what each field of ParsedMessage holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from email_service.errors import MessageUnparseable
from email_service.ingest.charsets import CharsetIssue
from email_service.ingest.parsing import (
    AttachmentInfo,
    Mailbox,
    ParsedMessage,
    filename_from_params,
    header_section,
    parse_message,
)
from email_service.ingest.transfer import decode_transfer


def wire(text: str, charset: str = "utf-8") -> bytes:
    """The message as a server sends it: CRLF line ends, encoded in ``charset``."""
    return text.replace("\n", "\r\n").encode(charset)


PLAIN = wire("""\
From: Alice Example <alice@example.com>
To: bob@example.com
Subject: Printer on floor 3 is jammed
Date: Tue, 02 Jan 2024 10:00:00 +0100
Message-ID: <plain-1@example.com>
Content-Type: text/plain; charset=us-ascii

Hello,
the printer is jammed again.
""")

ALTERNATIVE = wire("""\
From: alice@example.com
To: bob@example.com
Subject: Both kinds
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="ALT"

--ALT
Content-Type: text/plain; charset=utf-8

Plain version
--ALT
Content-Type: text/html; charset=utf-8

<p>HTML <b>version</b></p>
--ALT--
""")

HTML_ONLY = wire("""\
From: alice@example.com
Subject: HTML only
Content-Type: text/html; charset=utf-8

<html><body><p>Only HTML</p></body></html>
""")

ENCODED_WORDS = wire("""\
From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.de>
To: =?ISO-8859-1?Q?Andr=E9_Fran=E7ois?= <andre@example.fr>,
 =?utf-8?q?Doe=2C_Jane?= <jane@example.com>
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4pyT?=
 =?ISO-8859-1?Q?_=28caf=E9=29?=

Body
""")

THREADED = wire("""\
From: alice@example.com
Subject: Re: Re: Question
Message-ID: <reply-3@example.com>
In-Reply-To: <reply-2@example.com>
References: <root@example.com>
 <reply-1@example.com>
\t<reply-2@example.com>

Answer
""")

REPLY_ONLY = wire("""\
From: alice@example.com
Subject: Re: Question
In-Reply-To: <root@example.com> (Bob's message of Monday)

Answer
""")

ATTACHMENTS = wire("""\
From: alice@example.com
Subject: Files
Content-Type: multipart/mixed; boundary="OUT"

--OUT
Content-Type: multipart/related; boundary="REL"

--REL
Content-Type: text/html; charset=utf-8

<p>See <img src="cid:logo@example.com"></p>
--REL
Content-Type: image/png
Content-ID: <logo@example.com>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--REL--
--OUT
Content-Type: application/pdf; name="resume.pdf"
Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%80%93%20final.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQgZmFrZSByZXN1bWUKJVBERi0xLjQgZmFrZSByZXN1bWUKJVBERi0xLjQgZmFrZSBy
ZXN1bWUKJVBERi0xLjQgZmFrZSByZXN1bWUKJVBERi0xLjQgZmFrZSByZXN1bWUKJVBERi0xLjQg
ZmFrZSByZXN1bWUKJVBERi0xLjQgZmFrZSByZXN1bWUKJVBERi0xLjQgZmFrZSByZXN1bWUK
--OUT
Content-Type: text/csv
Content-Disposition: attachment;
 filename*0*=iso-8859-1''Gr%F6%DFe;
 filename*1=".csv"
Content-Transfer-Encoding: quoted-printable

a=3Db;c
--OUT
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="=?utf-8?b?R3LDtsOfZQ==?=.bin"

raw
--OUT--
""")

RECIPIENTS = wire("""\
From: alice@example.com
To: bob@example.com, "Carol C." <carol@example.com>,
  Dave <dave@example.com>
Cc: <erin@example.com>, "Frank" <frank@example.com>, grace@example.com (Grace)
Subject: Many people

Hi all
""")

WINDOWS_1252 = wire(
    """\
From: Jörg Müller <joerg@example.de>
Subject: Café “menu”
Content-Type: text/plain; charset=windows-1252
Content-Transfer-Encoding: 8bit

Grüße \N{EN DASH} 5 €
""",
    "cp1252",
)

KOI8_R = wire(
    """\
From: =?koi8-r?B?8NLJ18XU?= <ivan@example.ru>
Subject: Привет
Content-Type: text/plain; charset=koi8-r
Content-Transfer-Encoding: 8bit

Привет, мир
""",
    "koi8-r",
)

ISO_8859_1_WITH_CP1252 = wire(
    """\
From: alice@example.com
Content-Type: text/plain; charset=iso-8859-1

Price: 5 € “net”
""",
    "cp1252",
)

NO_FROM = wire("""\
To: support@example.com
Subject: Who sent this?

No From header.
""")

ATTACHED_MESSAGE = wire("""\
From: alice@example.com
Subject: Fwd: original
Content-Type: multipart/mixed; boundary="B"

--B
Content-Type: text/plain

See the forwarded message.
--B
Content-Type: message/rfc822
Content-Disposition: attachment

From: carol@example.com
Subject: original

Inner text
--B--
""")

MISSING_BOUNDARY = wire("""\
From: alice@example.com
Content-Type: multipart/mixed; boundary="NEVER"

Text without any boundary line.
""")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            PLAIN,
            {
                "subject": "Printer on floor 3 is jammed",
                "from_": (Mailbox("Alice Example", "alice@example.com"),),
                "to": (Mailbox("", "bob@example.com"),),
                "cc": (),
                "date": datetime(2024, 1, 2, 9, 0, tzinfo=UTC),
                "message_id": "<plain-1@example.com>",
                "in_reply_to": None,
                "references": (),
                "text": "Hello,\nthe printer is jammed again.\n",
                "html": None,
                "attachments": (),
            },
            id="plain-text",
        ),
        pytest.param(
            ALTERNATIVE,
            {"text": "Plain version", "html": "<p>HTML <b>version</b></p>", "attachments": ()},
            id="multipart-alternative",
        ),
        pytest.param(
            HTML_ONLY,
            {"text": None, "html": "<html><body><p>Only HTML</p></body></html>\n"},
            id="html-only",
        ),
        pytest.param(
            ENCODED_WORDS,
            {
                "subject": "Grüße aus Köln ✓ (café)",
                "from_": (Mailbox("Jürgen Müller", "juergen@example.de"),),
                "to": (
                    Mailbox("André François", "andre@example.fr"),
                    Mailbox("Doe, Jane", "jane@example.com"),
                ),
            },
            id="rfc2047-utf8-base64-and-latin1-qp",
        ),
        pytest.param(
            THREADED,
            {
                "message_id": "<reply-3@example.com>",
                "in_reply_to": "<reply-2@example.com>",
                "references": ("<root@example.com> <reply-1@example.com>\t<reply-2@example.com>",),
            },
            id="references-folded",
        ),
        pytest.param(
            REPLY_ONLY,
            {
                "message_id": None,
                "in_reply_to": "<root@example.com> (Bob's message of Monday)",
                "references": (),
            },
            id="in-reply-to-only",
        ),
        pytest.param(
            RECIPIENTS,
            {
                "to": (
                    Mailbox("", "bob@example.com"),
                    Mailbox("Carol C.", "carol@example.com"),
                    Mailbox("Dave", "dave@example.com"),
                ),
                "cc": (
                    Mailbox("", "erin@example.com"),
                    Mailbox("Frank", "frank@example.com"),
                    Mailbox("Grace", "grace@example.com"),
                ),
            },
            id="several-to-and-cc",
        ),
        pytest.param(
            WINDOWS_1252,
            {
                "subject": "Café “menu”",
                "from_": (Mailbox("Jörg Müller", "joerg@example.de"),),
                "text": "Grüße \N{EN DASH} 5 €\n",
            },
            id="windows-1252-raw-8bit",
        ),
        pytest.param(
            KOI8_R,
            {
                "subject": "Привет",
                "from_": (Mailbox("Привет", "ivan@example.ru"),),
                "text": "Привет, мир\n",
            },
            id="koi8-r",
        ),
        pytest.param(
            ISO_8859_1_WITH_CP1252,
            {"text": "Price: 5 € “net”\n"},
            id="latin1-label-read-as-windows-1252",
        ),
        pytest.param(
            NO_FROM,
            {"from_": (), "sender": (), "subject": "Who sent this?"},
            id="missing-from",
        ),
        pytest.param(
            ATTACHED_MESSAGE,
            {
                "text": "See the forwarded message.",
                "attachments": (
                    AttachmentInfo(
                        part="2",
                        name="",
                        content_type="message/rfc822",
                        # The embedded message, CRLF line ends, without the CRLF before the
                        # boundary (it belongs to the boundary).
                        size=len(b"From: carol@example.com\r\nSubject: original\r\n\r\nInner text"),
                        content_id=None,
                        is_inline=False,
                    ),
                ),
            },
            id="attached-message-not-in-body",
        ),
        pytest.param(
            MISSING_BOUNDARY,
            {"text": "Text without any boundary line.\n", "attachments": ()},
            id="multipart-without-boundary-read-as-text",
        ),
    ],
)
def test_parse_message_fields(raw: bytes, expected: dict[str, Any]) -> None:
    parsed = parse_message(raw)

    assert {field: getattr(parsed, field) for field in expected} == expected


def test_attachments_have_names_types_decoded_sizes_and_positions() -> None:
    parsed = parse_message(ATTACHMENTS)

    assert parsed.html == '<p>See <img src="cid:logo@example.com"></p>'
    assert parsed.attachments == (
        AttachmentInfo(
            part="1.2",
            name="",
            content_type="image/png",
            size=8,  # base64 "iVBORw0KGgo=" is the 8-byte PNG signature
            content_id="<logo@example.com>",
            is_inline=True,
        ),
        AttachmentInfo(
            part="2",
            name="résumé \N{EN DASH} final.pdf",  # RFC 2231, UTF-8
            content_type="application/pdf",
            size=168,  # decoded bytes, not the 222 characters of base64
            content_id=None,
            is_inline=False,
        ),
        AttachmentInfo(
            part="3",
            name="Größe.csv",  # RFC 2231 continuations, ISO-8859-1
            content_type="text/csv",
            size=len(b"a=b;c"),  # quoted-printable decoded
            content_id=None,
            is_inline=False,
        ),
        AttachmentInfo(
            part="4",
            name="Größe.bin",  # RFC 2047 inside a quoted parameter, as many mailers write it
            content_type="application/octet-stream",
            size=len(b"raw"),
            content_id=None,
            is_inline=False,
        ),
    )


def test_headers_keep_names_order_and_repeats_decoded_and_unfolded() -> None:
    raw = wire("""\
Received: from a.example.com by mx.example.com; Tue, 02 Jan 2024 10:00:02 +0100
Received: from b.example.com by a.example.com; Tue, 02 Jan 2024 10:00:01 +0100
X-Custom-Header: first part
 second part
Subject: =?utf-8?q?caf=C3=A9?=
From: alice@example.com

Body
""")

    assert parse_message(raw).headers == (
        ("Received", "from a.example.com by mx.example.com; Tue, 02 Jan 2024 10:00:02 +0100"),
        ("Received", "from b.example.com by a.example.com; Tue, 02 Jan 2024 10:00:01 +0100"),
        ("X-Custom-Header", "first part second part"),
        ("Subject", "café"),
        ("From", "alice@example.com"),
    )


def test_sender_is_parsed_for_messages_without_from() -> None:
    raw = wire("""\
Sender: =?utf-8?q?Help=2C_Desk?= <desk@example.com>
Subject: no From

Body
""")

    parsed = parse_message(raw)

    assert (parsed.from_, parsed.sender) == ((), (Mailbox("Help, Desk", "desk@example.com"),))


def test_parsed_message_is_frozen() -> None:
    parsed = parse_message(PLAIN)

    with pytest.raises(AttributeError):
        parsed.subject = "changed"  # type: ignore[misc]
    assert isinstance(parsed, ParsedMessage)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b" \r\n\r\n\t", id="white-space"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", id="binary-png"),
        pytest.param(b"\x00\xff\xfe\x01garbage\x02", id="control-bytes"),
        pytest.param(b"hello, this is not a message\r\nat all\r\n", id="bare-text"),
        pytest.param(b"\r\nBody after a blank line but no header\r\n", id="body-without-headers"),
        pytest.param(
            b"From: a@example.com\r\n"
            + b"".join(
                b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                for i in range(5000)
            )
            + b"Content-Type: text/plain\r\n\r\ndeep\r\n",
            id="nesting-too-deep",
        ),
    ],
)
def test_not_a_message_is_unparseable(raw: bytes) -> None:
    with pytest.raises(MessageUnparseable):
        parse_message(raw)


@pytest.mark.parametrize(
    ("raw", "expected_text"),
    [
        pytest.param(
            b"From: a@example.com\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
            b"\r\ncaf\xc3\xa9\r\n",
            "café\n",
            id="unknown-charset-falls-back-to-utf8",
        ),
        pytest.param(
            b"From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xe9\r\n",
            "café\n",
            id="invalid-utf8-falls-back-to-windows-1252",
        ),
        pytest.param(
            b"From: a@example.com\r\nContent-Type: text/plain\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n",
            "!!!not base64!!!",  # undecodable base64 is shown as written, as the stdlib does
            id="broken-base64-body",
        ),
        pytest.param(
            b"From: a@example.com\r\nSubject: =?utf-8?b?broken***?=\r\n\r\nstill here\r\n",
            "still here\n",
            id="broken-encoded-word",
        ),
    ],
)
def test_damaged_messages_still_parse(raw: bytes, expected_text: str) -> None:
    assert parse_message(raw).text == expected_text


@pytest.mark.parametrize(
    ("raw", "issues"),
    [
        pytest.param(PLAIN, (), id="as-labelled"),
        pytest.param(
            WINDOWS_1252,
            # The body's label is honoured; its raw 8-bit headers have none: read by it, a guess.
            (CharsetIssue("headers", "", "cp1252", "guessed_charset"),),
            id="windows-1252-body-raw-8bit-headers",
        ),
        pytest.param(
            b"From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xe9\r\n",
            (CharsetIssue("1", "utf-8", "cp1252", "wrong_charset"),),
            id="wrong-label",
        ),
        pytest.param(
            b"From: a@example.com\r\nContent-Type: text/plain; charset=x-no-such\r\n\r\n"
            b"caf\xc3\xa9",
            (CharsetIssue("1", "x-no-such", "utf-8", "unknown_charset"),),
            id="unknown-label",
        ),
        pytest.param(
            b"From: a@example.com\r\nSubject: =?x-klingon?q?qapla=FF?=\r\n\r\nbody",
            (CharsetIssue("headers", "x-klingon", "cp1252", "unknown_charset"),),
            id="unknown-label-in-encoded-word",
        ),
        pytest.param(
            b"From: J\xf6rg <j@example.de>\r\nSubject: caf\xe9\r\n\r\nbody",
            (CharsetIssue("headers", "", "cp1252", "guessed_charset"),),
            id="raw-8bit-header-guessed",
        ),
        pytest.param(
            "From: Jörg <j@example.de>\r\n\r\nbody".encode(),
            (),
            id="raw-utf8-header-is-rfc-6532",
        ),
    ],
)
def test_text_not_decoded_as_labelled_is_listed(
    raw: bytes, issues: tuple[CharsetIssue, ...]
) -> None:
    assert parse_message(raw).charset_issues == issues


def test_nul_becomes_the_replacement_character() -> None:
    raw = b"From: a@example.com\r\nSubject: a\x00b\r\n\r\nbefore\x00after\r\n"

    parsed = parse_message(raw)

    assert (parsed.subject, parsed.text) == ("a\ufffdb", "before\ufffdafter\n")


@pytest.mark.parametrize(
    ("raw", "header"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", b"A: 1\r\nB: 2\r\n\r\n"),
        (b"A: 1\nB: 2\n\nbody", b"A: 1\nB: 2\n\n"),
        (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n"),
    ],
    ids=["crlf", "bare-lf", "no-body"],
)
def test_header_section(raw: bytes, header: bytes) -> None:
    assert header_section(raw) == header


@pytest.mark.parametrize(
    ("octets", "encoding", "decoded"),
    [
        (b"aGVsbG8gd29ybGQ=", "base64", b"hello world"),
        (b"aGVs\r\nbG8g!!d29yb", "BASE64", b"hello wor"),  # junk skipped, lone char dropped
        (b"aGVsbG8", "base64", b"hello"),  # a cut group gives the bytes it holds
        (b"caf=C3=A9 =\r\nend", "quoted-printable", "café end".encode()),
        (b"as is", "8bit", b"as is"),
    ],
    ids=["base64", "base64-junk-and-lone-char", "base64-cut-group", "quoted-printable", "identity"],
)
def test_decode_transfer(octets: bytes, encoding: str, decoded: bytes) -> None:
    assert decode_transfer(octets, encoding) == decoded


@pytest.mark.parametrize(
    ("disposition", "content_type", "name"),
    [
        ((("filename", "report.pdf"),), (), "report.pdf"),
        ((), (("name", "=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="),), "résumé.pdf"),
        ((("filename*", "utf-8''r%C3%A9sum%C3%A9.pdf"),), (), "résumé.pdf"),
        ((("filename*0*", "iso-8859-1''Gr%F6%DFe"), ("filename*1", ".csv")), (), "Größe.csv"),
        # Raw 8-bit octets in a parameter: the stdlib (compat32) replaces them, for whole
        # messages and BODYSTRUCTURE alike. Senders use RFC 2231 or RFC 2047 instead.
        ((("filename", "caf\udce9.txt"),), (), "caf\ufffd.txt"),
        ((("filename", 'say "hi"\r\n.txt'),), (), 'say "hi"  .txt'),
        ((), (), ""),
    ],
    ids=[
        "plain",
        "rfc2047-in-name",
        "rfc2231",
        "rfc2231-continuations",
        "raw-8bit",
        "quotes-and-breaks",
        "none",
    ],
)
def test_filename_from_params(
    disposition: tuple[tuple[str, str], ...], content_type: tuple[tuple[str, str], ...], name: str
) -> None:
    assert filename_from_params(disposition, content_type) == name
