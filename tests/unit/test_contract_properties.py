"""Property test: messages built from random headers, addresses, encodings and structures
become events that pass the consumer's contract, or dead letters a message can earn.

Where ``test_mapping_properties`` mutates bytes, this builds messages the way senders get
them wrong: addresses of every shape (``user@localhost``, IP literals, quoted and non-ASCII
local parts, Unicode domains, display names with commas and encoded words), any of From,
Sender, Reply-To and Return-Path present or not, dates in and out of range, ids with and
without brackets, header values in raw UTF-8, Latin-1 or RFC 2047 words, and MIME trees of
text, HTML and attachments (empty ones too) in every transfer encoding.
"""

from __future__ import annotations

import base64
import quopri
import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_service.contract.check import check_entry
from email_service.imap.fetched import FetchedMessage
from email_service.ingest.entry import IngestTarget, build_entry
from email_service.model import FolderKey
from email_service.settings import IngressLimits
from tests.helpers import RANDOM_UUID, TENANT_A

TARGET = IngestTarget(FolderKey(TENANT_A, "p-1", "INBOX"), "imap", 9, IngressLimits())
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
#: Dead-letter reasons a message can earn; anything else is a bug of ours.
MESSAGE_REASONS = ("unparseable", "event_too_large", "no_usable_sender")

EXAMPLES = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

local_parts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9._+'-]{0,12}[a-z0-9]", fullmatch=True),
    st.sampled_from(['"quoted local"', '"plain"', "jörg", ".dot", "a..b", "o'", "", "ü"]),
)
domains = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}\.(com|example|de|co\.uk)", fullmatch=True),
    st.sampled_from(
        [
            "localhost",
            "[127.0.0.1]",
            "127.0.0.1",
            "münchen.de",
            "faß.de",
            "пример.рф",
            "exa_mple.com",
            "example.com.",
            "EXAMPLE.COM",
            "-bad.com",
            "xn--mnchen-3ya.de",
            "",
        ]
    ),
)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains) | st.text(
    max_size=20
)
display_names = st.one_of(
    st.just(""),
    st.text(max_size=20).map(lambda s: s.replace("\r", "").replace("\n", "")),
    st.sampled_from(['"Doe, Jane"', "=?utf-8?q?J=C3=B6rg?=", "=?utf-8?b?w7w=?=", "Ann <", "(c)"]),
)
mailboxes = st.builds(
    lambda name, address: f"{name} <{address}>" if name else address, display_names, addresses
)
mailbox_lists = st.lists(mailboxes, max_size=3).map(", ".join)
dates = st.one_of(
    st.sampled_from(
        [
            "Tue, 02 Jan 2024 10:00:00 +0100",
            "Mon, 1 Jan 0001 00:30:00 +0100",
            "Fri, 31 Dec 9999 23:59:59 -1200",
            "yesterday",
            "",
        ]
    ),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S +0000")),
)
ids = st.one_of(
    st.from_regex(r"<[a-z0-9.]{1,12}@[a-z]{1,8}\.example>", fullmatch=True),
    st.sampled_from(["<>", "no-brackets@example.com", "<a b@c>", "Your message of Monday"]),
    st.text(max_size=20),
)
header_names = st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True)


def header_value(text: str, how: str) -> bytes:
    """``text`` as a sender might put it in a header."""
    one_line = text.replace("\r", " ").replace("\n", " ")
    match how:
        case "utf8":
            return one_line.encode("utf-8", "surrogatepass")
        case "latin1":
            return one_line.encode("latin-1", "replace")
        case "b-word":
            return b"=?utf-8?b?" + base64.b64encode(one_line.encode("utf-8", "replace")) + b"?="
        case _:
            return (
                b"=?iso-8859-1?q?"
                + quopri.encodestring(one_line.encode("latin-1", "replace"))[:200]
                .replace(b"\n", b"")
                .replace(b" ", b"_")
                .replace(b"?", b"=3F")
                + b"?="
            )


encodings_of_headers = st.sampled_from(["utf8", "latin1", "b-word", "q-word"])

leaf_types = st.sampled_from(
    ["text/plain", "text/html", "application/pdf", "image/png", "text/calendar", "message/rfc822"]
)
transfer_encodings = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-bogus"])
charsets = st.sampled_from(["utf-8", "iso-8859-1", "koi8-r", "x-unknown", "", "gb2312"])


def encode_body(data: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.encodebytes(data)
    if encoding == "quoted-printable":
        return quopri.encodestring(data)
    return data


@st.composite
def leaves(draw: st.DrawFn) -> bytes:
    content_type = draw(leaf_types)
    encoding = draw(transfer_encodings)
    charset = draw(charsets)
    data = draw(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode()))
    head = f"Content-Type: {content_type}" + (f"; charset={charset}" if charset else "")
    if draw(st.booleans()):
        filename = draw(st.text(max_size=15)).replace('"', "").replace("\r", "").replace("\n", "")
        disposition = draw(st.sampled_from(["attachment", "inline"]))
        head += f'\r\nContent-Disposition: {disposition}; filename="{filename}"'
    if draw(st.booleans()):
        head += f"\r\nContent-ID: <{draw(st.text('abc123', min_size=1, max_size=6))}@x>"
    head += f"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
    return head.encode("utf-8", "surrogatepass") + encode_body(data, encoding)


def multipart(subtype: str, parts: list[bytes]) -> bytes:
    boundary = b"BOUNDARY-" + str(len(parts)).encode() + subtype.encode()
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary.decode()}"\r\n\r\n'
    return head.encode() + body + b"--" + boundary + b"--\r\n"


bodies = st.recursive(
    leaves(),
    lambda inner: st.builds(
        multipart, st.sampled_from(["mixed", "alternative", "related"]), st.lists(inner, max_size=4)
    ),
    max_leaves=6,
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    lines: list[bytes] = []
    for name in ("From", "Sender", "Reply-To", "To", "Cc"):
        if draw(st.booleans()):
            value = draw(mailbox_lists)
            lines.append(name.encode() + b": " + value.encode("utf-8", "surrogatepass"))
    if draw(st.booleans()):
        lines.append(b"Return-Path: <" + draw(addresses).encode("utf-8", "surrogatepass") + b">")
    for name, strategy in (("Date", dates), ("Message-ID", ids), ("In-Reply-To", ids)):
        if draw(st.booleans()):
            lines.append(name.encode() + b": " + draw(strategy).encode("utf-8", "surrogatepass"))
    if draw(st.booleans()):
        lines.append(b"References: " + " ".join(draw(st.lists(ids, max_size=4))).encode("utf-8"))
    lines.append(
        b"Subject: " + header_value(draw(st.text(max_size=40)), draw(encodings_of_headers))
    )
    for _ in range(draw(st.integers(0, 3))):
        value = header_value(draw(st.text(max_size=30)), draw(encodings_of_headers))
        lines.append(draw(header_names).encode() + b": " + value)
    lines.append(b"MIME-Version: 1.0")
    return b"\r\n".join(lines) + b"\r\n" + draw(bodies)


@EXAMPLES
@given(messages())
def test_generated_messages_pass_the_contract_or_are_dead_letters_they_earned(raw: bytes) -> None:
    fetched = FetchedMessage(uid=7, raw=raw, internal_date=NOW, flags=(), size=len(raw))

    entry = build_entry(fetched, TARGET, now=NOW, random_uuid=uuid.UUID(RANDOM_UUID))

    if entry.dead_letter:
        assert entry.fields["reason"] in MESSAGE_REASONS, entry.fields["detail"]
        return
    violation = check_entry(entry.fields)
    assert violation is None, violation
