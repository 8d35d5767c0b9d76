"""Real-world and hostile messages, and what each must become.

Small messages are files in this directory (exact bytes: some are not UTF-8, some not even
mail); large and repetitive ones are generated at test time (``generated``), so the
committed corpus stays small. ``CORPUS`` lists them all in delivery order, each with the
checks its event must pass, or the reason of its dead letter.

Used by ``tests/unit/test_corpus.py`` (each message straight through ``ingest.entry.build_entry``)
and ``tests/e2e/test_corpus.py`` (all of them delivered to Dovecot and read by a real
worker process, whose peak memory is measured).
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(__file__).parent
MB = 1024 * 1024

Check = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class CorpusMessage:
    """``expect`` checks the event's ``emailData``; ``dead_letter`` is the expected reason
    instead. ``large`` messages take seconds to build and parse: end-to-end only."""

    name: str
    build: Callable[[], bytes]
    expect: Check | None = None
    dead_letter: str | None = None
    large: bool = False


def file(name: str) -> Callable[[], bytes]:
    return (CORPUS_DIR / name).read_bytes


def skips(data: dict[str, Any]) -> list[str]:
    """The reasons of everything left out: the consumer's kinds, then ours."""
    return [
        skip["reason"]
        for key in ("ingressSkipReasons", "ingressTruncations")
        for skip in data.get(key, [])
    ]


def issues(data: dict[str, Any]) -> set[tuple[str, str]]:
    return {(issue["part"], issue["issue"]) for issue in data.get("charsetIssues", [])}


def names(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["name"], a["contentType"]) for a in data["attachments"]]


# --- generated messages ---


def _message(subject: str, body: str = "See below.") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Generator <generator@example.com>"
    message["To"] = "support@example.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@example.com>"
    message.set_content(body)
    return message


def one_megabyte_header() -> bytes:
    folded = "\r\n ".join(["x" * 70] * (MB // 73))
    head = f"From: big@example.com\r\nSubject: A one megabyte header\r\nX-Huge: {folded}\r\n"
    return (head + "Message-ID: <one-mb-header@example.com>\r\n\r\nbody\r\n").encode()


def twenty_thousand_header_fields() -> bytes:
    fields = "".join(f"X-Trace-{n}: hop {n} of a long trip\r\n" for n in range(20_000))
    head = "From: hops@example.com\r\nSubject: Twenty thousand header fields\r\n"
    return (head + fields + "Message-ID: <many-fields@example.com>\r\n\r\nbody\r\n").encode()


def five_thousand_recipients() -> bytes:
    to = ",\r\n ".join(f"Person {n} <person{n}@example.com>" for n in range(5000))
    head = f"From: all-staff@example.com\r\nTo: {to}\r\nSubject: Five thousand recipients\r\n"
    return (head + "Message-ID: <all-staff@example.com>\r\n\r\nHello everyone\r\n").encode()


def nested(depth: int) -> Callable[[], bytes]:
    def build() -> bytes:
        parts = [f"From: nest@example.com\r\nSubject: Nested {depth} deep\r\n"]
        parts += [
            f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n'
            for n in range(depth)
        ]
        parts.append("Content-Type: text/plain\r\n\r\ndeep inside\r\n")
        parts += [f"--b{n}--\r\n" for n in reversed(range(depth))]
        return "".join(parts).encode()

    return build


def forwarded(depth: int) -> bytes:
    message = _message("Forwarded 0 times", "the original")
    for n in range(1, depth + 1):
        outer = _message(f"Forwarded {n} times", f"forward number {n}")
        outer.add_attachment(message)
        message = outer
    return bytes(message)


def attachment_of(megabytes: int) -> Callable[[], bytes]:
    def build() -> bytes:
        message = _message(f"A {megabytes} MB attachment", "The scan is attached.")
        data = random.Random(megabytes).randbytes(megabytes * MB)
        message.add_attachment(
            data, maintype="application", subtype="octet-stream", filename=f"scan-{megabytes}.bin"
        )
        return bytes(message)

    return build


def many_attachments() -> bytes:
    head = (
        "From: exporter@example.com\r\nSubject: Three thousand attachments\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="P"\r\n\r\n'
        "--P\r\nContent-Type: text/plain\r\n\r\nSee the files.\r\n"
    )
    parts = "".join(
        f'--P\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename="r{n}.csv"'
        f"\r\n\r\n{n}\r\n"
        for n in range(3000)
    )
    return (head + parts + "--P--\r\n").encode()


def two_megabyte_html() -> bytes:
    rows = "".join(f"<tr><td>row {n}</td><td>{'v' * 40}</td></tr>" for n in range(30_000))
    message = EmailMessage()
    message["From"] = "newsletter@example.com"
    message["Subject"] = "Two megabytes of HTML"
    message.set_content(f"<html><body><table>{rows}</table></body></html>", subtype="html")
    return bytes(message)


def empty() -> bytes:
    return b""


def _base64_of(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- expectations ---


def _check_malformed(data: dict[str, Any]) -> None:
    assert "The outer multipart is never closed." in data["body"]["text"]
    assert names(data) == [("half.bin", "application/octet-stream")]


def _check_mislabelled(data: dict[str, Any]) -> None:
    assert data["body"]["text"] == "Grüße aus Köln \N{EN DASH} bis bald"
    assert data["body"]["html"] == "<p>Ünïcödé</p>"
    assert issues(data) == {("1", "wrong_charset"), ("2", "unknown_charset")}


def _check_reply_to_only(data: dict[str, Any]) -> None:
    assert data["from"] == {"email": "helpdesk@example.com", "name": "Help Desk"}
    assert data["fromHeader"] == "Reply-To"
    assert data["id"].startswith("imap-hash-")
    assert data["receivedAt"] == data["imap"]["internalDate"]
    assert "inReplyTo" not in data


def _check_unfit_addresses(data: dict[str, Any]) -> None:
    # From (admin@localhost) does not fit: Sender's address, its domain in IDNA form.
    assert data["from"] == {"email": "bounces+x@xn--bcher-kva.example", "name": "Bounce"}
    assert data["fromHeader"] == "Sender"
    # An IP literal and a quoted local part are left out of `to` (the parser already drops
    # the word without "@").
    assert data["to"] == [{"email": "ok@example.com"}, {"email": "jose@xn--espaol-zwa.example"}]
    assert data["cc"] == []
    # ... and stay in the headers, as written.
    assert "root@[127.0.0.1]" in data["headers"]["To"]
    assert data["headers"]["Cc"] == "demo@localhost"
    left_out = [s for s in data["ingressTruncations"] if s["reason"] == "address_not_accepted"]
    assert [(s["field"], s["size"]) for s in left_out] == [("to", 2), ("cc", 1)]


def _check_one_megabyte_header(data: dict[str, Any]) -> None:
    assert len(data["headers"]["X-Huge"].encode()) == 8 * 1024
    assert "header_value_over_max_bytes" in skips(data)


def _check_many_fields(data: dict[str, Any]) -> None:
    assert "header_total_bytes_exceeded" in skips(data)
    assert data["headers"]["Subject"] == "Twenty thousand header fields"
    assert sum(len(k) + len(v) for k, v in data["headers"].items()) <= 64 * 1024


def _check_recipients(data: dict[str, Any]) -> None:
    assert len(data["to"]) == 1000
    assert data["to"][999] == {"email": "person999@example.com", "name": "Person 999"}
    assert "recipients_count_exceeded" in skips(data)


def _check_large_attachment(whole: bool) -> Check:
    def check(data: dict[str, Any]) -> None:
        assert data["body"]["text"].strip() == "The scan is attached."
        assert data["attachments"] == []  # above IMAP_MAX_ATTACHMENT_BYTES
        expected = ["attachment_over_max_bytes"]
        assert skips(data) == (expected if whole else ["raw_mime_over_max_bytes", *expected])

    return check


def _check_many_attachments(data: dict[str, Any]) -> None:
    assert len(data["attachments"]) == 25
    assert len(data["ingressSkipReasons"]) == 100
    assert {s["reason"] for s in data["ingressSkipReasons"]} == {"attachment_count_exceeded"}
    assert data["ingressTruncations"][-1]["reason"] == "skip_reasons_truncated"
    assert data["ingressTruncations"][-1]["size"] == 3000 - 25 - 100


def _check_html(data: dict[str, Any]) -> None:
    # The text is derived from the HTML as sent, after its cap.
    assert data["body"]["text"].startswith("row 0 ")
    assert 250 * 1024 < len(data["body"]["html"].encode()) <= 256 * 1024
    assert skips(data) == ["body_html_over_max_bytes"]


CORPUS: tuple[CorpusMessage, ...] = (
    CorpusMessage("malformed-boundaries", file("malformed-boundaries.eml"), _check_malformed),
    CorpusMessage(
        "multipart-without-boundary",
        file("multipart-without-boundary.eml"),
        lambda d: assert_equal(d["body"]["text"], "Just text under a multipart label.\n"),
    ),
    CorpusMessage(
        "broken-transfer-encodings",
        file("broken-transfer-encodings.eml"),
        lambda d: assert_in("a bad escape =ZZ", d["body"]["text"]),
    ),
    CorpusMessage("mislabelled-charsets", file("mislabelled-charsets.eml"), _check_mislabelled),
    CorpusMessage(
        "raw-8bit-headers",
        file("raw-8bit-headers.eml"),
        lambda d: assert_equal(
            (d["subject"], d["from"]["name"], issues(d)),
            ("Rückfrage zur Rechnung “März”", "Jörg Müller", {("headers", "guessed_charset")}),
        ),
    ),
    CorpusMessage(
        "missing-from-date-message-id",
        file("missing-from-date-message-id.eml"),
        dead_letter="no_usable_sender",
    ),
    CorpusMessage(
        "reply-to-only-no-date-no-id", file("reply-to-only-no-date-no-id.eml"), _check_reply_to_only
    ),
    CorpusMessage(
        "senders-that-do-not-fit", file("senders-that-do-not-fit.eml"), _check_unfit_addresses
    ),
    CorpusMessage("one-megabyte-header", one_megabyte_header, _check_one_megabyte_header),
    CorpusMessage(
        "twenty-thousand-header-fields", twenty_thousand_header_fields, _check_many_fields
    ),
    CorpusMessage("five-thousand-recipients", five_thousand_recipients, _check_recipients),
    CorpusMessage(
        "nested-300-deep",
        nested(300),
        lambda d: assert_equal(d["body"]["text"].strip(), "deep inside"),
    ),
    CorpusMessage("nested-5000-deep", nested(5000), dead_letter="unparseable"),
    CorpusMessage(
        "forwarded-50-deep",
        lambda: forwarded(50),
        lambda d: assert_equal(names(d), [("attachment.eml", "message/rfc822")]),
    ),
    CorpusMessage(
        "fifty-megabyte-attachment", attachment_of(50), _check_large_attachment(False), large=True
    ),
    CorpusMessage(
        "fifteen-megabyte-attachment", attachment_of(15), _check_large_attachment(True), large=True
    ),
    CorpusMessage("three-thousand-attachments", many_attachments, _check_many_attachments),
    CorpusMessage("two-megabytes-of-html", two_megabyte_html, _check_html),
    CorpusMessage(
        "tnef-winmail",
        file("tnef-winmail.eml"),
        lambda d: assert_equal(names(d), [("winmail.dat", "application/ms-tnef")]),
    ),
    CorpusMessage(
        "calendar-invitation",
        file("calendar-invitation.eml"),
        lambda d: assert_equal(names(d), [("attachment.ics", "text/calendar")]),
    ),
    CorpusMessage(
        "delivery-status-notification",
        file("delivery-status-notification.eml"),
        lambda d: assert_equal(
            (d["from"]["email"], names(d)),
            (
                "MAILER-DAEMON@mx.example.com",
                [
                    ("attachment.txt", "message/delivery-status"),
                    ("attachment.txt", "text/rfc822-headers"),
                ],
            ),
        ),
    ),
    CorpusMessage(
        "smime-signed",
        file("smime-signed.eml"),
        lambda d: assert_equal(
            (d["body"]["text"], names(d)),
            ("The signed text.", [("smime.p7s", "application/pkcs7-signature")]),
        ),
    ),
    CorpusMessage(
        "smime-encrypted",
        file("smime-encrypted.eml"),
        lambda d: assert_equal(names(d), [("smime.p7m", "application/pkcs7-mime")]),
    ),
    CorpusMessage(
        "japanese-iso-2022-jp",
        file("japanese-iso-2022-jp.eml"),
        lambda d: assert_equal(
            (d["subject"], d["from"]["name"], d["body"]["text"].splitlines()[0]),
            ("会議の件について", "山田太郎", "来週の会議は火曜日の十時からです。"),
        ),
    ),
    CorpusMessage(
        "chinese-gb2312-label-gbk-text",
        file("chinese-gb2312-label-gbk-text.eml"),
        lambda d: assert_equal(
            (d["subject"], d["body"]["text"].strip()),
            ("打印机", "您好\N{FULLWIDTH COMMA}打印机又坏了。镕"),
        ),
    ),
    CorpusMessage(
        "arabic-hebrew-emoji-utf8",
        file("arabic-hebrew-emoji-utf8.eml"),
        lambda d: assert_equal(
            (d["subject"], d["to"][0]["name"], d["body"]["text"].splitlines()),
            ("مرحبا 👋 \N{EN DASH} שלום", "דנה", ["مرحبا بالعالم 👋", "שלום עולם 🎉"]),
        ),
    ),
    CorpusMessage(
        "russian-koi8-r",
        file("russian-koi8-r.eml"),
        lambda d: assert_equal((d["subject"], d["from"]["name"]), ("Привет", "Иван")),
    ),
    CorpusMessage(
        "bare-lf-line-ends",
        file("bare-lf-line-ends.eml"),
        lambda d: assert_equal(d["body"]["text"], "Line one\nLine two\n"),
    ),
    CorpusMessage(
        "headers-only-no-body",
        file("headers-only-no-body.eml"),
        lambda d: assert_equal(
            (d["subject"], d["body"]), ("Headers and nothing else", {"text": ""})
        ),
    ),
    CorpusMessage(
        "nul-bytes-in-body",
        file("nul-bytes-in-body.eml"),
        # NUL is U+FFFD in events; Dovecot itself serves NUL as 0x80 (windows-1252: €).
        lambda d: assert_in(d["body"]["text"], ("before\ufffd\ufffdafter\n", "before€€after\n")),
    ),
    CorpusMessage(
        "garbage-content-type",
        file("garbage-content-type.eml"),
        lambda d: assert_in("Body under a garbage Content-Type.", d["body"]["text"]),
    ),
    CorpusMessage(
        "repeated-headers",
        file("repeated-headers.eml"),
        lambda d: assert_equal(
            (d["id"], d["subject"], d["threadId"], d["inReplyTo"]),
            (
                "<repeated-1@example.com>",
                "First subject",
                "<root@example.com>",
                "<mid@example.com>",
            ),
        ),
    ),
    CorpusMessage("binary-junk", file("binary-junk.bin"), dead_letter="unparseable"),
    CorpusMessage("empty", empty, dead_letter="unparseable"),
)


def assert_equal(actual: Any, expected: Any) -> None:
    assert actual == expected, f"{actual!r} != {expected!r}"


def assert_in(part: Any, whole: Any) -> None:
    assert part in whole, f"{part!r} not in {whole!r:.200}"
