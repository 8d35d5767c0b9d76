"""Size caps through Dovecot: a message above IMAP_MAX_RAW_MIME_BYTES is never downloaded
whole, yet its event has the same sender, subject, body text and attachments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from email_service.ingest.email_data import MessageMeta, build_email_data, sha256_hex
from email_service.ingest.parsing import parse_message
from email_service.settings import Settings
from tests.conftest import MailUser
from tests.helpers import TENANT_A, wait_for_stream_entries
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.integration

#: The raw cap of these tests: the message below is about 300 KB.
RAW_CAP = 64 * 1024


def large_message(text: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Jürgen Müller <juergen@example.de>"
    message["To"] = "support@example.com, Second <second@example.com>"
    message["Subject"] = "Scanned invoices ✓"
    message["Message-ID"] = "<large-1@example.de>"
    message["Date"] = "Tue, 02 Jan 2024 10:00:00 +0100"
    message.set_content(text)
    message.add_alternative(f"<p>{text}</p><img src='cid:logo@example.de'>", subtype="html")
    message.get_payload()[1].add_related(
        os.urandom(3000), maintype="image", subtype="png", cid="<logo@example.de>"
    )
    message.add_attachment(
        os.urandom(200_000), maintype="application", subtype="pdf", filename="Rechnung März.pdf"
    )
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("inner text")
    message.add_attachment(inner)
    return bytes(message)


@pytest.fixture
def capped_worker(environ: dict[str, str]) -> Iterator[InProcessWorker]:
    service = InProcessWorker(
        Settings.from_env(
            {
                **environ,
                "IMAP_MAX_RAW_MIME_BYTES": str(RAW_CAP),
                "IMAP_MAX_BODY_TEXT_BYTES": "20000",
            }
        )
    )
    yield service
    service.close()


def event_of(raw: bytes) -> dict[str, Any]:
    """What the event would say had the message been downloaded whole."""
    meta = MessageMeta(TENANT_A, "p", "imap", "INBOX", 1, 1, None, len(raw), (), datetime.now(UTC))
    return build_email_data(parse_message(raw), meta, sha256_hex(raw))


def test_a_message_above_the_raw_cap_is_read_from_headers_structure_and_text_parts(
    capped_worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    short = large_message("Please find the invoices attached. Grüße")
    long_text = large_message("Zeile mit Umlauten äöü. " * 2000)  # ~50 KB text: above the body cap
    capped_worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    for raw in (short, long_text):
        dovecot.deliver(mail_user.name, raw)
    capped_worker.start()

    events = wait_for_stream_entries(redis_client, stream, 2)

    data = events[0]["payload"]["emailData"]
    whole = event_of(short)
    for field in ("id", "from", "to", "subject", "threadId", "receivedAt"):
        assert data[field] == whole[field], field
    assert data["body"]["text"] == whole["body"]["text"]
    assert data["body"]["html"] == whole["body"]["html"]
    assert [
        (a["id"], a["name"], a["contentType"], a.get("contentId"), a["isInline"])
        for a in data["attachments"]
    ] == [
        (a["id"], a["name"], a["contentType"], a.get("contentId"), a["isInline"])
        for a in whole["attachments"]
    ]
    for sent, exact in zip(data["attachments"], whole["attachments"], strict=True):
        assert abs(sent["size"] - exact["size"]) <= exact["size"] * 0.03 + 64  # estimated
    size = data["imap"]["size"]
    assert size > RAW_CAP
    assert data["ingressSkipReasons"] == [
        {"type": "raw_mime", "reason": "raw_mime_over_max_bytes", "size": size, "cap": RAW_CAP}
    ]
    assert data["headers"]["Subject"] == "Scanned invoices ✓"

    cut = events[1]["payload"]["emailData"]
    assert len(cut["body"]["text"].encode()) <= 20000
    assert cut["body"]["text"].startswith("Zeile mit Umlauten äöü. Zeile")
    assert [skip["reason"] for skip in cut["ingressSkipReasons"]] == ["raw_mime_over_max_bytes"]
    assert [skip["reason"] for skip in cut["ingressTruncations"]] == [
        "body_html_over_max_bytes",
        "body_text_over_max_bytes",
    ]
