"""A 40 MB video through a worker process and an API process: listed in the event with the
consumer's skip reason, then downloaded through the API byte for byte, while neither
process's resident memory grows with it."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
from pathlib import Path

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from email_service.devserver.samples import mail_with_attachments
from tests.conftest import MailUser
from tests.e2e.processes import ApiProcess, WorkerProcess, api_env, cli
from tests.helpers import TENANT_A, wait_for, wait_for_stream_entries
from tests.integration.api_harness import provider_body

pytestmark = pytest.mark.e2e

VIDEO_BYTES = 40 * 1024 * 1024
#: What either process may grow by while the video passes: a fraction of it (it never sits
#: in memory whole, nor its 54 MB of base64).
GROWTH_BOUND_KIB = 24 * 1024
#: Bytes the test reads at a time, like a client writing the download to disk.
READ_BYTES = 256 * 1024


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def test_a_40_mb_video_is_downloaded_byte_exact_in_bounded_memory(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    redis_client: redis.Redis[bytes],
    stream: str,
    processes: list[ApiProcess | WorkerProcess],
    tmp_path: Path,
) -> None:
    env = api_env(environ, EMAIL_SERVICE_MAX_EVENT_BYTES=str(4 * 1024 * 1024))
    api = ApiProcess(env, tmp_path / "api.log")
    processes.append(api)
    wait_for(lambda: api.request("GET", "/ready")[0] == 200, timeout_s=30, what="api ready")
    token = cli("api-token", "--tenant", TENANT_A, env=env).stdout.strip()
    status, created = api.request(
        "POST",
        "/api/v1/providers",
        token,
        provider_body(dovecot, mail_user),
    )
    assert status == 201, created
    pdf, image, video = os.urandom(2 * 1024 * 1024), os.urandom(30_000), os.urandom(VIDEO_BYTES)
    dovecot.deliver(
        mail_user.name,
        mail_with_attachments(
            [("invoice.pdf", "application/pdf", pdf), ("clip.mp4", "video/mp4", video)],
            inline_image=image,
        ),
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    processes.append(worker)

    (event,) = wait_for_stream_entries(redis_client, stream, 1, timeout_s=60)
    data = event["payload"]["emailData"]
    inline = {a["contentType"]: a.get("content") for a in data["attachments"]}
    assert base64.b64decode(inline["application/pdf"]) == pdf
    assert base64.b64decode(inline["image/png"]) == image
    (skip,) = [s for s in data["ingressSkipReasons"] if s.get("attachmentName") == "clip.mp4"]
    path = data["contentLocation"]["part"].replace("{partId}", skip["attachmentId"])
    worker_before, api_before = rss_kib(worker.process.pid), rss_kib(api.process.pid)

    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    assert response.status == 200, response.read()[:500]
    digest, received, api_peak = hashlib.sha256(), 0, api_before
    while chunk := response.read(READ_BYTES):
        digest.update(chunk)
        received += len(chunk)
        api_peak = max(api_peak, rss_kib(api.process.pid))
    connection.close()

    assert received == VIDEO_BYTES
    assert digest.hexdigest() == hashlib.sha256(video).hexdigest()
    assert response.getheader("Content-Type") == "video/mp4"
    assert response.getheader("Content-Disposition") == 'attachment; filename="clip.mp4"'
    assert api_peak - api_before < GROWTH_BOUND_KIB, (api_before, api_peak)
    # The worker read the message from its headers and structure (over the raw size cap),
    # and serves nothing of the download.
    assert rss_kib(worker.process.pid, "VmHWM") - worker_before < GROWTH_BOUND_KIB
