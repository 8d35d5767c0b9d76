"""build_email_data on literal RFC 5322 messages: the emailData object of the event contract."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from email_service.errors import NoUsableSender
from email_service.ingest.email_data import (
    ADDRESS_PART_MAX_BYTES,
    HEADER_VALUE_MAX_BYTES,
    MessageMeta,
    build_email_data,
    html_to_text,
    iso_utc,
    sha256_hex,
)
from email_service.ingest.parsing import parse_message
from email_service.settings import IngressLimits
from tests.helpers import TENANT_A

META = MessageMeta(
    tenant=TENANT_A,
    provider_id="provider-1",
    provider_type="imap",
    folder="INBOX",
    uid=42,
    uid_validity=7,
    internal_date=datetime(2024, 1, 2, 11, 30, 5, tzinfo=timezone(timedelta(hours=2))),
    size=1234,
    flags=("\\Seen", "$Forwarded"),
    fetched_at=datetime(2024, 1, 3, 8, 0, tzinfo=UTC),
)


def wire(text: str) -> bytes:
    """The message as a server sends it: CRLF line ends, UTF-8."""
    return text.replace("\n", "\r\n").encode()


def email_data(raw: bytes, **meta: Any) -> dict[str, Any]:
    return build_email_data(parse_message(raw), dataclasses.replace(META, **meta), sha256_hex(raw))


PLAIN = wire("""\
From: "Alice Example" <alice@example.com>
To: bob@example.com, Carol <carol@example.com>
Cc: =?utf-8?q?Dave_D=C3=BCrr?= <dave@example.com>
Subject: Printer jammed
Date: Tue, 02 Jan 2024 10:00:00 +0100
Message-ID: <plain-1@example.com>
Content-Type: text/plain; charset=utf-8

Hello,
the printer is jammed.
""")

HTML_ONLY = wire("""\
From: alice@example.com
Message-ID: <html-1@example.com>
Content-Type: text/html; charset=utf-8

<html><head><title>Ignored</title><style>p { color: red }</style></head>
<body><p>Hello&nbsp;there,</p><div>line one<br>line two</div>
<script>alert("no")</script><ul><li>first</li><li>second</li></ul></body></html>
""")

BLANK_TEXT_AND_HTML = wire("""\
From: alice@example.com
Content-Type: multipart/alternative; boundary="ALT"

--ALT
Content-Type: text/plain

\x20
--ALT
Content-Type: text/html

<p>From the HTML</p>
--ALT--
""")

NO_MESSAGE_ID = wire("""\
From: alice@example.com
Subject: No id

Body
""")

NO_DATE = wire("""\
From: alice@example.com
Message-ID: <no-date@example.com>

Body
""")

BAD_DATE = wire("""\
From: alice@example.com
Date: sometime last week
Message-ID: <bad-date@example.com>

Body
""")

THREADED = wire("""\
From: alice@example.com
Message-ID: <reply-3@example.com>
In-Reply-To: <reply-2@example.com>
References: <root@example.com>
 <reply-1@example.com>,<reply-2@example.com>
\t<root@example.com> <reply-
 2@example.com>

Answer
""")

REPLY_ONLY = wire("""\
From: alice@example.com
Message-ID: <reply-1@example.com>
In-Reply-To: <root@example.com> (Bob's message of Monday)

Answer
""")

BARE_IDS = wire("""\
From: alice@example.com
Message-ID: bare-id@example.com
In-Reply-To: Your message of Monday
References: root@example.com, reply-1@example.com

Answer
""")

NO_FROM_WITH_SENDER = wire("""\
Sender: Help Desk <desk@example.com>
To: support@example.com
Message-ID: <sender-only@example.com>

Body
""")

NO_FROM = wire("""\
To: support@example.com
Message-ID: <no-from@example.com>

Body
""")

FROM_WITHOUT_ADDRESS = wire("""\
From: Just A Name
Message-ID: <name-only@example.com>

Body
""")

ATTACHMENTS = wire("""\
From: alice@example.com
Message-ID: <files@example.com>
Content-Type: multipart/mixed; boundary="OUT"

--OUT
Content-Type: text/plain

See attached.
--OUT
Content-Type: image/png
Content-ID: logo@example.com
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--OUT
Content-Type: application/pdf
Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQgZmFrZSByZXN1bWUK
--OUT
Content-Type: message/rfc822

Subject: inner

x
--OUT--
""")

REPEATED_HEADERS = wire("""\
Received: from a.example.com by mx.example.com; Tue, 02 Jan 2024 10:00:02 +0100
From: alice@example.com
received: from b.example.com by a.example.com; Tue, 02 Jan 2024 10:00:01 +0100
X-Note: one
 folded
Message-ID: <headers@example.com>

Body
""")


def test_plain_message_gives_the_whole_email_data() -> None:
    assert email_data(PLAIN) == {
        "id": "<plain-1@example.com>",
        "provider": "imap",
        "providerId": "provider-1",
        "tenant": TENANT_A,
        "receivedAt": "2024-01-02T09:00:00.000Z",
        "from": {"email": "alice@example.com", "name": "Alice Example"},
        "to": [{"email": "bob@example.com"}, {"email": "carol@example.com", "name": "Carol"}],
        "cc": [{"email": "dave@example.com", "name": "Dave Dürr"}],
        "subject": "Printer jammed",
        "body": {"text": "Hello,\nthe printer is jammed.\n"},
        "attachments": [],
        "threadId": "<plain-1@example.com>",
        "references": [],
        "fromHeader": "From",
        "headers": {
            "From": '"Alice Example" <alice@example.com>',
            "To": "bob@example.com, Carol <carol@example.com>",
            "Cc": "Dave Dürr <dave@example.com>",
            "Subject": "Printer jammed",
            "Date": "Tue, 02 Jan 2024 10:00:00 +0100",
            "Message-ID": "<plain-1@example.com>",
            "Content-Type": "text/plain; charset=utf-8",
        },
        "imap": {
            "folder": "INBOX",
            "uid": 42,
            "uidValidity": 7,
            "internalDate": "2024-01-02T09:30:05.000Z",
            "size": 1234,
            "flags": ["\\Seen", "$Forwarded"],
        },
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            HTML_ONLY,
            {
                "text": "Hello there,\nline one\nline two\n- first\n- second",
                "has_html": True,
            },
            id="html-only-text-derived",
        ),
        pytest.param(
            BLANK_TEXT_AND_HTML,
            {"text": "From the HTML", "has_html": True},
            id="blank-text-part-text-derived",
        ),
        pytest.param(
            PLAIN,
            {"text": "Hello,\nthe printer is jammed.\n", "has_html": False},
            id="text-part-kept-no-html",
        ),
    ],
)
def test_body(raw: bytes, expected: dict[str, Any]) -> None:
    body = email_data(raw)["body"]

    assert {"text": body["text"], "has_html": "html" in body} == expected


@pytest.mark.parametrize(
    ("raw", "meta", "expected"),
    [
        pytest.param(PLAIN, {}, "2024-01-02T09:00:00.000Z", id="date-header-in-utc"),
        pytest.param(NO_DATE, {}, "2024-01-02T09:30:05.000Z", id="no-date-internal-date"),
        pytest.param(BAD_DATE, {}, "2024-01-02T09:30:05.000Z", id="bad-date-internal-date"),
        pytest.param(
            NO_DATE, {"internal_date": None}, "2024-01-03T08:00:00.000Z", id="then-fetched-at"
        ),
        pytest.param(
            wire("From: a@example.com\nDate: Mon, 1 Jan 0001 00:30:00 +0100\n\nbody\n"),
            {},
            "2024-01-02T09:30:05.000Z",
            id="date-without-utc-time-internal-date",
        ),
    ],
)
def test_received_at(raw: bytes, meta: dict[str, Any], expected: str) -> None:
    assert email_data(raw, **meta)["receivedAt"] == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            THREADED,
            {
                "id": "<reply-3@example.com>",
                "threadId": "<root@example.com>",
                "inReplyTo": "<reply-2@example.com>",
                "references": [
                    "<root@example.com>",
                    "<reply-1@example.com>",
                    "<reply-2@example.com>",
                ],
            },
            id="references-folded-comma-duplicates",
        ),
        pytest.param(
            REPLY_ONLY,
            {
                "id": "<reply-1@example.com>",
                "threadId": "<root@example.com>",
                "inReplyTo": "<root@example.com>",
                "references": [],
            },
            id="in-reply-to-only",
        ),
        pytest.param(
            BARE_IDS,
            {
                "id": "<bare-id@example.com>",
                "threadId": "<root@example.com>",
                "inReplyTo": "absent",
                "references": ["<root@example.com>", "<reply-1@example.com>"],
            },
            id="ids-without-brackets",
        ),
        pytest.param(
            PLAIN,
            {
                "id": "<plain-1@example.com>",
                "threadId": "<plain-1@example.com>",
                "inReplyTo": "absent",
                "references": [],
            },
            id="no-threading-headers",
        ),
    ],
)
def test_ids_and_threading(raw: bytes, expected: dict[str, Any]) -> None:
    data = email_data(raw)

    # No key is ever null: a message that replies to nothing has no inReplyTo at all.
    assert {key: data.get(key, "absent") for key in expected} == expected


def test_missing_message_id_falls_back_to_hash_of_bytes_and_uid() -> None:
    first = email_data(NO_MESSAGE_ID)
    again = email_data(NO_MESSAGE_ID)
    other_uid = email_data(NO_MESSAGE_ID, uid=43)

    expected = f"imap-hash-{sha256_hex(NO_MESSAGE_ID)}-42"
    assert (first["id"], again["id"], first["threadId"]) == (expected, expected, expected)
    assert other_uid["id"] == f"imap-hash-{sha256_hex(NO_MESSAGE_ID)}-43"


@pytest.mark.parametrize(
    "message_id",
    [
        pytest.param("<>", id="empty-brackets"),
        pytest.param("not-an-id", id="no-brackets-no-at"),
        pytest.param("", id="empty"),
    ],
)
def test_unusable_message_id_falls_back_to_hash(message_id: str) -> None:
    raw = wire(f"From: alice@example.com\nMessage-ID: {message_id}\n\nBody\n")

    assert email_data(raw)["id"] == f"imap-hash-{sha256_hex(raw)}-42"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(PLAIN, {"email": "alice@example.com", "name": "Alice Example"}, id="from"),
        pytest.param(
            NO_FROM_WITH_SENDER,
            {"email": "desk@example.com", "name": "Help Desk"},
            id="no-from-sender",
        ),
        pytest.param(NO_MESSAGE_ID, {"email": "alice@example.com"}, id="no-name"),
        pytest.param(
            wire("From: x@localhost, Ann <ann@example.com>\n\nb\n"),
            {"email": "ann@example.com", "name": "Ann"},
            id="second-from-mailbox-fits",
        ),
        pytest.param(
            wire("From: x@localhost\nReply-To: Desk <desk@example.com>\n\nb\n"),
            {"email": "desk@example.com", "name": "Desk"},
            id="reply-to",
        ),
        pytest.param(
            wire("From: root@[10.0.0.1]\nReturn-Path: <bounce@Example.COM>\n\nb\n"),
            {"email": "bounce@example.com"},
            id="return-path-domain-lower-cased",
        ),
        pytest.param(
            wire("From: =?utf-8?q?J=C3=B6rg?= <j@münchen.de>\n\nb\n"),
            {"email": "j@xn--mnchen-3ya.de", "name": "Jörg"},
            id="idna-domain",
        ),
    ],
)
def test_from(raw: bytes, expected: dict[str, str]) -> None:
    assert email_data(raw)["from"] == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(NO_FROM, id="no-from-no-sender"),
        pytest.param(FROM_WITHOUT_ADDRESS, id="from-without-address"),
        pytest.param(wire("From: demo@localhost\nSender: x@[127.0.0.1]\n\nb\n"), id="none-fits"),
    ],
)
def test_no_usable_sender_is_refused(raw: bytes) -> None:
    with pytest.raises(NoUsableSender):
        email_data(raw)


def test_missing_subject_is_empty_string() -> None:
    assert email_data(NO_DATE)["subject"] == ""


def test_attachments_are_metadata_with_stable_ids() -> None:
    data = email_data(ATTACHMENTS)

    assert data["attachments"] == [
        {
            "id": "2",
            "name": "attachment.png",
            "contentType": "image/png",
            "size": 8,
            "contentId": "<logo@example.com>",
            "isInline": True,
        },
        {
            "id": "3",
            "name": "résumé.pdf",
            "contentType": "application/pdf",
            "size": len(b"%PDF-1.4 fake resume\n"),
            "isInline": False,
        },
        {
            "id": "4",
            "name": "attachment.eml",
            "contentType": "message/rfc822",
            "size": len(b"Subject: inner\r\n\r\nx"),
            "isInline": False,
        },
    ]
    assert email_data(ATTACHMENTS)["attachments"] == data["attachments"]
    assert data["body"] == {"text": "See attached."}


def test_headers_join_repeats_under_first_spelling() -> None:
    assert email_data(REPEATED_HEADERS)["headers"] == {
        "Received": "from a.example.com by mx.example.com; Tue, 02 Jan 2024 10:00:02 +0100\n"
        "from b.example.com by a.example.com; Tue, 02 Jan 2024 10:00:01 +0100",
        "From": "alice@example.com",
        "X-Note": "one folded",
        "Message-ID": "<headers@example.com>",
    }


@pytest.mark.parametrize(
    ("header_lines", "expected_bytes"),
    [
        pytest.param("X-Long: " + "a" * 9000, HEADER_VALUE_MAX_BYTES, id="ascii"),
        # 2-byte characters: the cut falls on a character boundary, never inside one.
        pytest.param("X-Long: " + "é" * 5000, HEADER_VALUE_MAX_BYTES, id="two-byte-utf8"),
        pytest.param("X-Long: " + "€" * 3000, HEADER_VALUE_MAX_BYTES - 2, id="three-byte-utf8"),
        pytest.param("\n".join(["X-Long: " + "b" * 3000] * 3), HEADER_VALUE_MAX_BYTES, id="joined"),
        pytest.param("X-Long: " + "c" * 100, 100, id="short"),
    ],
)
def test_header_values_are_bounded(header_lines: str, expected_bytes: int) -> None:
    raw = wire(f"From: alice@example.com\n{header_lines}\n\nBody\n")

    value = email_data(raw)["headers"]["X-Long"]

    assert len(value.encode("utf-8")) == expected_bytes
    assert parse_message(raw).headers[1][1].startswith(value.partition("\n")[0])


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(PLAIN, id="plain"),
        pytest.param(HTML_ONLY, id="html-only"),
        pytest.param(ATTACHMENTS, id="attachments"),
        pytest.param(THREADED, id="threaded"),
        pytest.param(NO_MESSAGE_ID, id="no-message-id"),
        pytest.param(
            "From: Jörg <j@example.de>\r\nSubject: caf\xe9\r\n\r\n\x80\r\n".encode("latin-1"),
            id="raw-8bit-not-utf8",
        ),
    ],
)
def test_email_data_is_plain_json(raw: bytes) -> None:
    data = email_data(raw)

    encoded = json.dumps(data, ensure_ascii=False).encode("utf-8")

    assert json.loads(encoded) == data  # tuples or other types would not come back equal


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"provider_type": "exchange"}, "provider_type", id="unknown-provider"),
        pytest.param(
            {"internal_date": datetime(2024, 1, 2, 9, 0)},
            "timezone-aware",
            id="naive-internal-date",
        ),
    ],
)
def test_message_meta_rejects(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(META, **changes)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        pytest.param("<p>One</p><p>Two</p>", "One\nTwo", id="paragraphs"),
        pytest.param("a<br>b<br/>c", "a\nb\nc", id="line-breaks"),
        pytest.param("<b>bold</b> and <i>italic</i>", "bold and italic", id="inline-spacing"),
        pytest.param("x<script>var a = '<p>';</script>y", "xy", id="script-dropped"),
        pytest.param("<style>p { x: 1 }</style>text", "text", id="style-dropped"),
        pytest.param("&lt;tag&gt; &amp; caf&eacute; &#8364;", "<tag> & café €", id="entities"),
        pytest.param("<pre>  indented\n    code</pre>", "  indented\n    code", id="pre-kept"),
        pytest.param("<table><tr><td>a</td><td>b</td></tr></table>", "a b", id="table-cells"),
        pytest.param("a<br><br><br><br><br>b", "a\n\nb", id="blank-lines-collapsed"),
        pytest.param("<p>unclosed <b>tags", "unclosed tags", id="unclosed-tags"),
        pytest.param("", "", id="empty"),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(datetime(2024, 1, 2, 9, 0, tzinfo=UTC), "2024-01-02T09:00:00.000Z", id="utc"),
        pytest.param(
            datetime(2024, 1, 2, 0, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
            "2024-01-01T23:30:00.123Z",
            id="offset-and-microseconds",
        ),
    ],
)
def test_iso_utc(moment: datetime, expected: str) -> None:
    assert iso_utc(moment) == expected


def test_iso_utc_rejects_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        iso_utc(datetime(2024, 1, 2))


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_charset_issues_are_listed_only_when_there_are_some() -> None:
    mislabelled = b"From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xe9"

    assert "charsetIssues" not in email_data(PLAIN)
    assert email_data(mislabelled)["charsetIssues"] == [
        {"part": "1", "declared": "utf-8", "decodedAs": "cp1252", "issue": "wrong_charset"}
    ]
    lossy = email_data(mislabelled.replace(b"\xe9", b"\x81"))["charsetIssues"]
    assert lossy[0]["lossy"] is True


def limited(raw: bytes, **limits: Any) -> dict[str, Any]:
    return build_email_data(
        parse_message(raw), META, sha256_hex(raw), IngressLimits(**limits), skips=()
    )


@pytest.mark.parametrize(
    ("raw", "limits", "check", "reasons"),
    [
        pytest.param(
            PLAIN,
            {},
            lambda d: "ingressSkipReasons" not in d and "ingressTruncations" not in d,
            [],
            id="nothing-left-out",
        ),
        pytest.param(
            wire("From: a@example.com\nSubject: " + "s" * 9000 + "\n\nbody\n"),
            {},
            lambda d: len(d["subject"]) == HEADER_VALUE_MAX_BYTES,
            ["header_value_over_max_bytes", "header_value_over_max_bytes"],  # Subject twice
            id="long-subject",
        ),
        pytest.param(
            wire(f"From: {'n' * 2000} <a@example.com>\n\nbody\n"),
            {},
            lambda d: len(d["from"]["name"]) == ADDRESS_PART_MAX_BYTES,
            ["address_over_max_bytes"],
            id="long-display-name",
        ),
        pytest.param(
            wire(f"From: a@example.com\nMessage-ID: <{'m' * 1000}@x>\n\nbody\n"),
            {},
            lambda d: d["id"].startswith("imap-hash-"),
            [],
            id="message-id-too-long-to-be-one",
        ),
        pytest.param(
            wire("From: a@example.com\n\n" + "é" * 3000 + "\n"),
            {"max_body_text_bytes": 1001},
            lambda d: d["body"]["text"] == "é" * 500,
            ["body_text_over_max_bytes"],
            id="body-text-cut-on-a-character",
        ),
        pytest.param(
            ATTACHMENTS,
            {"max_attachment_count": 1},
            lambda d: [a["id"] for a in d["attachments"]] == ["2"],
            ["attachment_count_exceeded", "attachment_count_exceeded"],
            id="attachment-count",
        ),
        pytest.param(
            wire(
                "From: a@example.com\nReferences: "
                + " ".join(f"<r{n}@x>" for n in range(150))
                + "\n\nb\n"
            ),
            {},
            lambda d: d["references"][0] == "<r0@x>" and d["references"][-1] == "<r149@x>",
            ["references_count_exceeded"],
            id="references-keep-root-and-newest",
        ),
    ],
)
def test_caps_leave_things_out_and_say_so(
    raw: bytes, limits: dict[str, Any], check: Any, reasons: list[str]
) -> None:
    data = limited(raw, **limits)

    assert check(data)
    left_out = data.get("ingressSkipReasons", []) + data.get("ingressTruncations", [])
    assert sorted(skip["reason"] for skip in left_out) == sorted(reasons)
    assert json.loads(json.dumps(data)) == data


def test_reasons_found_before_parsing_come_first() -> None:
    skip = {"type": "raw_mime", "reason": "raw_mime_over_max_bytes", "size": 9, "cap": 5}
    data = build_email_data(parse_message(PLAIN), META, sha256_hex(PLAIN), skips=[skip])

    assert data["ingressSkipReasons"] == [skip]
