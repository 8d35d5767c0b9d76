"""Throughput and memory of the API's part download, against fetching the part whole.

    python bench/content_download.py [--megabytes 40] [--runs 3] [--parallel 4]

Saves one message with a ``--megabytes`` attachment (random bytes, base64 on the wire) to a
throwaway Dovecot, runs ``email-service api`` as a subprocess, and downloads the part
through ``GET .../parts/2`` ``--runs`` times one after another, then ``--parallel`` at once,
reading like a client that writes to disk (256 KiB at a time) and sampling the API's RSS
after every read. The baseline is a bare imapclient ``UID FETCH BODY.PEEK[2]`` of the whole
part plus its base64 decoding: the fastest a client holding it all in memory gets. Prints
JSON: seconds and MB/s per run, the API's RSS before, at its sampled peak and after.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api_abuse import api_env, call, provider, rss_kib, start_api
from bench.common import (
    PASSWORD,
    bare_client,
    scratch_database,
)
from email_service.api.auth import sign_token
from email_service.devserver.dovecot import start_dovecot
from email_service.devserver.samples import mail_with_attachments
from email_service.settings import Settings

#: Bytes read per call, like a client copying the download to a file.
READ_BYTES = 256 * 1024
MIB = 1024 * 1024


def download(port: int, path: str, token: str, api_pid: int, peaks: list[int]) -> tuple[float, str]:
    """Seconds to read the whole answer, and its SHA-256; the API's RSS is sampled."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"download answered {response.status}: {response.read()[:300]!r}")
    digest = hashlib.sha256()
    while chunk := response.read(READ_BYTES):
        digest.update(chunk)
        peaks.append(rss_kib(api_pid)["VmRSS"])
    connection.close()
    return time.monotonic() - started, digest.hexdigest()


def measure(megabytes: int, runs: int, parallel: int) -> dict[str, Any]:
    size = megabytes * MIB
    content = os.urandom(size)
    expected = hashlib.sha256(content).hexdigest()
    result: dict[str, Any] = {"megabytes": megabytes, "runs": runs, "parallel": parallel}
    with tempfile.TemporaryDirectory() as tmp, scratch_database() as database_url:
        dovecot = start_dovecot(Path(tmp) / "dovecot", users=[("bob", PASSWORD)])
        message = mail_with_attachments([("big.bin", "application/octet-stream", content)])
        dovecot.doveadm("save", "-u", "bob", "-m", "INBOX", stdin=message)
        client = bare_client(dovecot, "bob")
        uid_validity = int(client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"])
        (uid,) = client.search("ALL")
        bare = []
        for _ in range(runs):
            started = time.monotonic()
            wire = client.fetch([uid], [b"BODY.PEEK[2]"])[uid][b"BODY[2]"]
            decoded = base64.b64decode(wire)
            bare.append(time.monotonic() - started)
            assert hashlib.sha256(decoded).hexdigest() == expected
            del wire, decoded
        client.logout()

        env = api_env(database_url, EMAIL_SERVICE_LOG_LEVEL="warning")
        api, port = start_api(env, Path(tmp) / "api.log")
        try:
            tenant = str(uuid.uuid4())
            token = sign_token(Settings.from_env(env), tenant, subject="bench")
            status, created = call(
                port, "POST", "/api/v1/providers", token, provider(dovecot.imap_port, "bob")
            )
            assert status == 201, created
            path = f"/api/v1/providers/{created['id']}/messages/INBOX/{uid_validity}/{uid}/parts/2"
            before = rss_kib(api.pid)["VmRSS"]
            peaks: list[int] = [before]
            one_by_one = []
            for _ in range(runs):
                seconds, digest = download(port, path, token, api.pid, peaks)
                assert digest == expected, "the download differs from the attachment"
                one_by_one.append(seconds)
            sequential_peak = max(peaks)
            together: list[float] = []

            def one() -> None:
                seconds, digest = download(port, path, token, api.pid, peaks)
                assert digest == expected
                together.append(seconds)

            threads = [threading.Thread(target=one) for _ in range(parallel)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - started
            time.sleep(2)
            after = rss_kib(api.pid)
            median_bare = statistics.median(bare)
            median_api = statistics.median(one_by_one)
            result.update(
                bare_fetch_s=[round(s, 3) for s in bare],
                bare_mb_per_s=round(megabytes / median_bare, 1),
                api_download_s=[round(s, 3) for s in one_by_one],
                api_mb_per_s=round(megabytes / median_api, 1),
                api_vs_bare_percent=round(100 * median_bare / median_api),
                parallel_wall_s=round(wall, 2),
                parallel_total_mb_per_s=round(parallel * megabytes / wall, 1),
                api_rss_before_kib=before,
                api_rss_peak_one_at_a_time_kib=sequential_peak,
                api_rss_peak_parallel_kib=max(peaks),
                api_rss_after_kib=after["VmRSS"],
                api_rss_high_water_kib=after["VmHWM"],
            )
        finally:
            api.terminate()
            api.wait(30)
            dovecot.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(measure(args.megabytes, args.runs, args.parallel), indent=2))


if __name__ == "__main__":
    main()
