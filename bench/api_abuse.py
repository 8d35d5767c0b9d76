"""One tenant abusing the API's folder listing, another tenant's ``test`` meanwhile.

    python bench/api_abuse.py [--folders 2000000] [--parallel 10]

Tenant A's provider points at a scriptable fake IMAP server whose LIST names ``--folders``
folders (streamed as it is sent); tenant B's at Dovecot. The script runs
``email-service api`` as a subprocess, fires ``--parallel`` ``GET .../folders`` calls for A
at once and, while they run, B's ``POST .../test`` again and again. It prints the API's
RSS (idle, peak during, after), A's answers, and B's test latencies (idle and under
abuse) as JSON. Needs PostgreSQL and Redis like the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PASSWORD,
    REDIS_URL,
    free_port,
    scratch_database,
    start_service,
    summary_ms,
)
from email_service.api.auth import sign_token
from email_service.devserver.dovecot import start_dovecot
from email_service.devserver.fake_imap import FakeImapServer, many_folders
from email_service.security.secretbox import generate_key
from email_service.settings import Settings

JWT_SECRET = "bench-secret-for-api-tokens-0123456789abcdef"  # noqa: S105 - throwaway


def api_env(database_url: str, **extra: str) -> dict[str, str]:
    """An API's environment; its mail servers are the bench's own, on localhost."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "EMAIL_SERVICE_SECRET_KEYS": generate_key(),
        "EMAIL_SERVICE_API_JWT_SECRET": JWT_SECRET,
        "IMAP_ALLOW_PRIVATE_HOSTS": "true",
        **extra,
    }


def start_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``email-service api`` on a free port, once ``/health`` answers; the process, its port."""
    port = free_port()
    api = start_service(["api", "--port", str(port)], env, log)
    deadline = time.monotonic() + 30
    while call(port, "GET", "/health", "")[0] != 200:
        if time.monotonic() > deadline:
            api.kill()
            raise RuntimeError("the API did not start")
        time.sleep(0.1)
    return api, port


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def call(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:  # noqa: S310 - loopback
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError as exc:
        return 0, str(exc)


def provider(host_port: int, user: str) -> dict[str, Any]:
    return {
        "name": "Bench",
        "mailbox": f"{user}@example.com",
        "host": "127.0.0.1",
        "port": host_port,
        "security": "none",
        "username": user,
        "password": PASSWORD,
    }


def measure(folders: int, parallel: int) -> dict[str, Any]:
    result: dict[str, Any] = {"folders": folders, "parallel": parallel}
    with tempfile.TemporaryDirectory() as tmp, scratch_database() as database_url:
        dovecot = start_dovecot(Path(tmp) / "dovecot", users=[("bob", PASSWORD)])
        fake = FakeImapServer.start({"LIST": many_folders(folders)})
        env = api_env(database_url)
        settings = Settings.from_env(env)
        api, port = start_api(env, Path(tmp) / "api.log")
        try:
            tenant_a, tenant_b = str(uuid.uuid4()), str(uuid.uuid4())
            token_a, token_b = (sign_token(settings, t, subject="b") for t in (tenant_a, tenant_b))
            status, a = call(port, "POST", "/api/v1/providers", token_a, provider(fake.port, "a"))
            assert status == 201, a
            status, b = call(
                port, "POST", "/api/v1/providers", token_b, provider(dovecot.imap_port, "bob")
            )
            assert status == 201, b
            test_b = f"/api/v1/providers/{b['id']}/test"
            idle = []
            for _ in range(3):
                started = time.monotonic()
                status, outcome = call(port, "POST", test_b, token_b)
                assert status == 200 and outcome["ok"], outcome
                idle.append(time.monotonic() - started)
            result["rss_idle_kib"] = rss_kib(api.pid)["VmRSS"]

            answers: list[tuple[int, Any]] = []

            def list_a() -> None:
                status, body = call(port, "GET", f"/api/v1/providers/{a['id']}/folders", token_a)
                summary = (
                    {"folders": len(body["folders"]), "truncated": body.get("truncated")}
                    if status == 200
                    else body
                )
                answers.append((status, summary))

            abusers = [threading.Thread(target=list_a) for _ in range(parallel)]
            started_abuse = time.monotonic()
            for thread in abusers:
                thread.start()
            under, peak = [], 0
            while any(t.is_alive() for t in abusers) or not under:
                started = time.monotonic()
                status, outcome = call(port, "POST", test_b, token_b)
                under.append(time.monotonic() - started)
                peak = max(peak, rss_kib(api.pid)["VmRSS"])
                if status == 429:  # B's own rate limit: wait for a token
                    time.sleep(6)
            for thread in abusers:
                thread.join()
            result["abuse_s"] = round(time.monotonic() - started_abuse, 1)
            time.sleep(5)
            memory = rss_kib(api.pid)
            result.update(
                rss_peak_sampled_kib=peak,
                rss_after_kib=memory["VmRSS"],
                rss_high_water_kib=memory["VmHWM"],
                answers_a=sorted({json.dumps(a) for a in answers}),
                test_b_idle=summary_ms(idle),
                test_b_under_abuse=summary_ms(under),
            )
        finally:
            api.terminate()
            api.wait(30)
            fake.close()
            dovecot.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=2_000_000)
    parser.add_argument("--parallel", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(measure(args.folders, args.parallel), indent=2))


if __name__ == "__main__":
    main()
