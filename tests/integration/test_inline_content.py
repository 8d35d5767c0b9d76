"""Inline content through Dovecot, and publishing held while a consumer group lags or Redis
memory is above its high water mark."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from email_service.devserver.samples import mail_with_attachments, make_message
from email_service.settings import Settings
from tests.conftest import MailUser
from tests.helpers import provider_row, wait_for, wait_for_stream_entries
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.integration

PDF = os.urandom(2 * 1024 * 1024)
IMAGE = os.urandom(20_000)
VIDEO_BYTES = 40 * 1024 * 1024


def mail_with_video() -> bytes:
    return mail_with_attachments(
        [
            ("invoice.pdf", "application/pdf", PDF),
            ("clip.mp4", "video/mp4", os.urandom(VIDEO_BYTES)),
        ],
        inline_image=IMAGE,
        message_id="<video-1@example.com>",
    )


@pytest.fixture
def inline_worker(environ: dict[str, str]) -> Iterator[InProcessWorker]:
    service = InProcessWorker(
        Settings.from_env({**environ, "EMAIL_SERVICE_MAX_EVENT_BYTES": str(4 * 1024 * 1024)})
    )
    yield service
    service.close()


def test_pdf_and_image_inline_byte_exact_video_named_with_the_consumers_reason(
    inline_worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    inline_worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    dovecot.deliver(mail_user.name, mail_with_video())
    inline_worker.start()

    (event,) = wait_for_stream_entries(redis_client, stream, 1, timeout_s=30)

    data = event["payload"]["emailData"]
    contents = {a["name"]: a.get("content") for a in data["attachments"]}
    assert base64.b64decode(contents["invoice.pdf"]) == PDF
    image = next(a for a in data["attachments"] if a["contentType"] == "image/png")
    assert image["isInline"]
    assert base64.b64decode(image["content"]) == IMAGE
    assert "clip.mp4" not in contents
    (skip,) = [s for s in data["ingressSkipReasons"] if s["type"] == "attachment"]
    assert skip["reason"] == "attachment_over_max_bytes"
    assert skip["attachmentName"] == "clip.mp4"
    assert skip["size"] >= VIDEO_BYTES * 0.97
    location = data["contentLocation"]
    assert location["part"].endswith(f"/{data['imap']['uid']}/parts/{{partId}}")


@pytest.fixture
def lagging_worker(environ: dict[str, str]) -> Iterator[InProcessWorker]:
    service = InProcessWorker(
        Settings.from_env(
            {
                **environ,
                "IMAP_FETCH_BATCH_SIZE": "1",
                "IMAP_MAX_EMAILS_PER_SYNC": "50",
                "EMAIL_SERVICE_BACKLOG_HIGH_ENTRIES": "3",
                "EMAIL_SERVICE_BACKLOG_LOW_ENTRIES": "1",
            }
        )
    )
    yield service
    service.close()


def small_mail(n: int) -> bytes:
    return make_message(f"mail {n}", body=f"body {n}", message_id=f"<lag-{n}@example.com>")


def test_a_lagging_group_pauses_publishing_and_reading_resumes_it_losing_nothing(
    lagging_worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    redis_client.xgroup_create(stream, "helpdesk", id="$", mkstream=True)
    provider = lagging_worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    for n in range(8):
        dovecot.deliver(mail_user.name, small_mail(n))
    lagging_worker.start()

    wait_for(
        lambda: lagging_worker.parts.listener_context.metrics.value(
            "email_service_publish_paused", reason="backlog"
        ),
        timeout_s=15,
        what="publishing paused",
    )
    held = redis_client.xlen(stream)
    assert 3 <= held < 8  # paused just above the high mark, with mail still to publish
    row = wait_for(
        lambda: (
            (r := provider_row(lagging_worker.parts.engine, provider.id, tenant))["status"]
            == "publishing_paused"
            and r
        ),
        timeout_s=5,
        what="the provider's status to say it is paused",
    )
    assert "consumer backlog" in row["error_message"]

    read = 0

    def consume() -> bool:
        nonlocal read
        for _name, entries in redis_client.xreadgroup("helpdesk", "c1", {stream: ">"}) or []:
            for entry_id, _fields in entries:
                redis_client.xack(stream, "helpdesk", entry_id)
                read += 1
        return read >= 8

    wait_for(consume, timeout_s=15, what="the group to read all 8 events")
    subjects = sorted(
        e["payload"]["emailData"]["subject"]
        for e in wait_for_stream_entries(redis_client, stream, 8)
    )
    assert subjects == sorted(f"mail {n}" for n in range(8))
    wait_for(
        lambda: (
            provider_row(lagging_worker.parts.engine, provider.id, tenant)["status"] == "connected"
        ),
        timeout_s=5,
        what="the provider's status to say connected again",
    )


#: Inline content per mail in the memory test: about 0.8 MB of base64 per entry.
MEMORY_TEST_ATTACHMENT_BYTES = 600_000
MEMORY_TEST_MAILS = 10


def test_redis_memory_stays_under_the_high_mark_and_trimming_resumes_publishing(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    used = int(redis_client.info("memory")["used_memory"])
    high, low = used + 4 * 1024 * 1024, used + 2 * 1024 * 1024
    worker = InProcessWorker(
        Settings.from_env(
            {
                **environ,
                "IMAP_FETCH_BATCH_SIZE": "1",
                "IMAP_MAX_EMAILS_PER_SYNC": "50",
                "EMAIL_SERVICE_REDIS_MEMORY_HIGH_BYTES": str(high),
                "EMAIL_SERVICE_REDIS_MEMORY_LOW_BYTES": str(low),
            }
        )
    )
    try:
        redis_client.xgroup_create(stream, "helpdesk", id="$", mkstream=True)
        worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
        for n in range(MEMORY_TEST_MAILS):
            attachment = (
                f"log-{n}.bin",
                "application/octet-stream",
                os.urandom(MEMORY_TEST_ATTACHMENT_BYTES),
            )
            dovecot.deliver(mail_user.name, mail_with_attachments([attachment]))
        worker.start()

        wait_for(
            lambda: worker.parts.listener_context.metrics.value(
                "email_service_publish_paused", reason="memory"
            ),
            timeout_s=20,
            what="publishing paused for Redis memory",
        )
        held = redis_client.xlen(stream)
        assert 1 <= held < MEMORY_TEST_MAILS
        assert int(redis_client.info("memory")["used_memory"]) < high

        seen: set[str] = set()

        def consume_and_trim() -> bool:
            """What a consumer that trims below what it acknowledged does."""
            for _name, entries in redis_client.xreadgroup("helpdesk", "c1", {stream: ">"}) or []:
                for entry_id, fields in entries:
                    event = json.loads(fields[b"payload_json"])
                    seen.add(event["emailData"]["attachments"][0]["name"])
                    redis_client.xack(stream, "helpdesk", entry_id)
                    redis_client.xtrim(stream, minid=entry_id.decode(), approximate=False)
                    redis_client.xdel(stream, entry_id)
            assert int(redis_client.info("memory")["used_memory"]) < high
            return len(seen) == MEMORY_TEST_MAILS

        wait_for(consume_and_trim, timeout_s=30, what="every mail, published as room was made")
        assert seen == {f"log-{n}.bin" for n in range(MEMORY_TEST_MAILS)}
    finally:
        worker.close()
