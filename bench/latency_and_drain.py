"""Delivery-to-event latency and backlog drain, against a bare IDLE client on the same server.

Run: ``python bench/latency_and_drain.py [--messages 100] [--backlog 1000]``.
Needs Redis (REDIS_URL, default redis://127.0.0.1:6379/0); starts its own Dovecot and runs
``email-service worker`` as a subprocess on a SQLite database in a temporary directory.
Prints a Markdown table and writes JSON to bench/results/.

Dovecot waits a hard-coded 500 ms before it pushes EXISTS, so the baseline (a bare
imapclient connection in IDLE, timed from delivery to EXISTS plus one UID FETCH) is the
floor to compare with, not zero.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import imapclient
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from email_service.devserver.dovecot import DovecotServer, start_dovecot  # noqa: E402
from email_service.secretbox import generate_key  # noqa: E402
from tests.helpers import make_message  # noqa: E402

#: Pause before each timed delivery, so the client under test is back in IDLE (a message
#: that arrives while it is still writing its cursor is seen at once when IDLE starts,
#: which would measure the bookkeeping instead of the push).
GAP_S = 0.3


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def baseline_latency(dovecot: DovecotServer, user: str, password: str, count: int) -> list[float]:
    """A bare imapclient IDLE: delivery → EXISTS → UID FETCH BODY.PEEK[] of the new UID."""
    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    client = imapclient.IMAPClient("localhost", port=dovecot.imaps_port, ssl_context=context)
    client.login(user, password)
    client.select_folder("INBOX", readonly=True)
    last_uid = max(client.search("ALL") or [0])
    latencies = []
    for n in range(count):
        time.sleep(GAP_S)
        client.idle()
        started = time.monotonic()
        dovecot.deliver(user, make_message(f"baseline {n}"))
        while True:
            try:
                if any(r[1] == b"EXISTS" for r in client.idle_check(timeout=5)):
                    break
            except imapclient.exceptions.ProtocolError:
                # imapclient's idle_check reads non-blocking and can split a line (the very
                # reason the service reads IDLE responses itself): the data did arrive.
                break
        client.idle_done()
        uids = [u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid]
        client.fetch(uids, [b"BODY.PEEK[]"])
        latencies.append(time.monotonic() - started)
        last_uid = max(uids)
    client.logout()
    return latencies


def wait_for_length(client: redis.Redis[bytes], stream: str, length: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while client.xlen(stream) < length:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {client.xlen(stream)} of {length} events on {stream}")
        time.sleep(0.002)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "email_service", "worker", "--http-port", "0"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def add_provider(env: dict[str, str], dovecot: DovecotServer, user: str, password: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "email_service",
            "provider",
            "add",
            "--tenant",
            "bench",
            "--name",
            "bench",
            "--mailbox",
            f"{user}@localhost",
            "--host",
            "localhost",
            "--port",
            str(dovecot.imaps_port),
            "--security",
            "tls",
            "--username",
            user,
            "--password-stdin",
            "--tls-ca-file",
            str(dovecot.ca_file),
        ],
        env={**os.environ, **env},
        input=password.encode() + b"\n",
        check=True,
        capture_output=True,
    )


def mixed_message(n: int) -> bytes:
    """Text, HTML, and every tenth with a ~200 KB attachment: about 23 KB on average."""
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40 + "\n") * 2
    if n % 10 == 0:
        from email.message import EmailMessage

        message = EmailMessage()
        message["From"], message["To"] = "alice@example.com", "support@example.com"
        message["Subject"] = f"backlog {n}"
        message["Message-ID"] = f"<backlog-{n}@bench>"
        message.set_content(body)
        message.add_alternative(f"<p>{body}</p>", subtype="html")
        message.add_attachment(
            os.urandom(150_000),
            maintype="application",
            subtype="octet-stream",
            filename=f"file-{n}.bin",
        )
        return bytes(message)
    return make_message(f"backlog {n}", body=body, message_id=f"<backlog-{n}@bench>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--backlog", type=int, default=1000)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    env = {
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "REDIS_URL": redis_url,
        "EMAIL_SERVICE_SECRET_KEYS": generate_key(),
        "EMAIL_SERVICE_EVENT_STREAM": stream,
        "IMAP_STARTUP_STAGGER_MS": "0",
        "EMAIL_SERVICE_LOG_LEVEL": "warning",
    }
    dovecot = start_dovecot(workdir / "dovecot", users=[("bare", "pw"), ("svc", "pw")])
    worker = None
    try:
        baseline = baseline_latency(dovecot, "bare", "pw", args.messages)
        add_provider(env, dovecot, "svc", "pw")
        worker = start_worker(env, workdir / "worker.log")
        dovecot.deliver("svc", make_message("warm-up"))
        wait_for_length(client, stream, 1, 30)
        service = []
        for n in range(args.messages):
            time.sleep(GAP_S)
            started = time.monotonic()
            dovecot.deliver("svc", make_message(f"latency {n}"))
            wait_for_length(client, stream, n + 2, 10)
            service.append(time.monotonic() - started)
        worker.terminate()
        worker.wait(30)

        for n in range(args.backlog):
            dovecot.deliver("svc", mixed_message(n))
        before = client.xlen(stream)
        started = time.monotonic()
        worker = start_worker(env, workdir / "worker.log")
        wait_for_length(client, stream, before + 1, 60)
        first_event = time.monotonic()
        wait_for_length(client, stream, before + args.backlog, 600)
        drained = time.monotonic()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        dovecot.stop()
        client.delete(stream)
    result = {
        "latency_baseline_bare_idle": summary_ms(baseline),
        "latency_service": summary_ms(service),
        "backlog": {
            "messages": args.backlog,
            "start_to_last_event_s": round(drained - started, 2),
            "first_to_last_event_s": round(drained - first_event, 2),
            "messages_per_s": round(args.backlog / (drained - first_event), 1),
        },
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latency_and_drain.json").write_text(json.dumps(result, indent=2))
    b, s = result["latency_baseline_bare_idle"], result["latency_service"]
    print("| delivery → event (ms) | p50 | p99 | max | n |")
    print("|---|---|---|---|---|")
    row = "| {} | {p50_ms} | {p99_ms} | {max_ms} | {n} |"
    print(row.format("bare imapclient IDLE + fetch", **b))
    print(row.format("email-service worker", **s))
    d = result["backlog"]
    print(
        f"\nbacklog of {d['messages']} mixed messages: {d['messages_per_s']} msg/s "
        f"({d['first_to_last_event_s']} s first to last event, "
        f"{d['start_to_last_event_s']} s from process start)"
    )


if __name__ == "__main__":
    main()
