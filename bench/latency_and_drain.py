"""Push latency and backlog drain, each against a bare client on the same server.

Run all benchmarks with ``python -m bench``; this one alone with
``python bench/latency_and_drain.py [--messages 200] [--backlog 10000] [--server cyrus]``.
Needs Redis (REDIS_URL, default redis://127.0.0.1:6379/0); starts its own Dovecot (or Cyrus)
and runs ``email-service worker`` as a subprocess on a SQLite database in a temporary
directory.

- latency: the baseline is a bare imapclient connection in IDLE on the same server, timed
  from delivery to EXISTS (``bare_exists``: what the server itself takes) and to EXISTS
  plus ``UID SEARCH`` and one ``UID FETCH BODY.PEEK[]`` (``baseline``). Dovecot waits a
  hard-coded 500 ms before it pushes EXISTS, Cyrus about a millisecond, so the baseline is
  the floor to compare with, not zero.
- drain: the same backlog of mixed messages (text, HTML, every tenth with a 150 KB
  attachment) is read by a bare loop in one process (``UID FETCH BODY.PEEK[]`` in batches
  of ``IMAP_FETCH_BATCH_SIZE``, each message parsed with ``mailparser.parse_from_bytes``)
  before and after the service drains it; the better of the two bare passes is the
  baseline. The service is timed from process start until the last event is on the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import mailparser

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BENCH_TENANT,
    PASSWORD,
    ROOT,
    SERVERS,
    WorkerProcess,
    bare_client,
    mixed_message,
    redis_client,
    start_server,
    summary_ms,
    wait_for_exists,
    wait_for_length,
    worker_env,
)
from email_service.devserver.mailserver import MailServer
from email_service.devserver.samples import make_message
from email_service.security.secretbox import generate_key
from email_service.settings import Settings

#: Pause before each timed delivery, so the client under test is back in IDLE (a message
#: that arrives while it is still writing its cursor is seen at once when IDLE starts,
#: which would measure the bookkeeping instead of the push).
GAP_S = 0.3
#: Messages per APPEND command while filling the backlog.
APPEND_BATCH = 200
#: The service's settings when nothing is configured: the bare loop fetches in batches of
#: the same size (IMAP_FETCH_BATCH_SIZE).
DEFAULTS = Settings.from_env({})


def baseline_latency(server: MailServer, user: str, count: int) -> dict[str, list[float]]:
    """A bare IDLE client: delivery → EXISTS, and → EXISTS + UID SEARCH + UID FETCH."""
    client = bare_client(server, user)
    client.select_folder("INBOX", readonly=True)
    last_uid = max(client.search("ALL") or [0])
    exists, fetched = [], []
    for n in range(count):
        time.sleep(GAP_S)
        client.idle()
        started = time.monotonic()
        server.deliver(user, make_message(f"baseline {n}"))
        wait_for_exists(client, 10)
        exists.append(time.monotonic() - started)
        client.idle_done()
        uids = [u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid]
        client.fetch(uids, [b"BODY.PEEK[]"])
        fetched.append(time.monotonic() - started)
        last_uid = max(uids)
    client.logout()
    return {"exists": exists, "fetched": fetched}


def add_provider(env: dict[str, str], server: MailServer, user: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "email_service",
            "provider",
            "add",
            "--tenant",
            BENCH_TENANT,
            "--name",
            "bench",
            "--mailbox",
            f"{user}@localhost",
            "--host",
            "localhost",
            "--port",
            str(server.imaps_port),
            "--security",
            "tls",
            "--username",
            user,
            "--password-stdin",
            "--tls-ca-file",
            str(server.ca_file),
        ],
        env={**os.environ, **env},
        input=PASSWORD.encode() + b"\n",
        check=True,
        capture_output=True,
    )


def _single_node(workdir: Path, stream: str) -> dict[str, str]:
    return worker_env(
        f"sqlite:///{workdir / 'bench.db'}",
        generate_key(),
        stream,
        IMAP_STARTUP_STAGGER_MS="0",
    )


def measure_latency(messages: int, server_kind: str = "dovecot") -> dict[str, object]:
    """Delivery → event on the stream, against a bare IDLE client; ``messages`` each."""
    client = redis_client()
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    env = _single_node(workdir, stream)
    server = start_server(server_kind, workdir, [("bare", PASSWORD), ("svc", PASSWORD)])
    worker = None
    try:
        baseline = baseline_latency(server, "bare", messages)
        add_provider(env, server, "svc")
        worker = WorkerProcess.start(env, workdir / "worker.log")
        server.deliver("svc", make_message("warm-up"))
        wait_for_length(client, stream, 1, 30)
        service = []
        for n in range(messages):
            time.sleep(GAP_S)
            started = time.monotonic()
            server.deliver("svc", make_message(f"latency {n}"))
            wait_for_length(client, stream, n + 2, 10)
            service.append(time.monotonic() - started)
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        client.delete(stream)
    return {
        "server": server_kind,
        "bare_exists": summary_ms(baseline["exists"]),
        "baseline": summary_ms(baseline["fetched"]),
        "service": summary_ms(service),
    }


def fill_backlog(server: MailServer, user: str, count: int) -> int:
    """APPEND ``count`` mixed messages to INBOX; returns their total size in bytes."""
    client = bare_client(server, user)
    total = 0
    for start in range(0, count, APPEND_BATCH):
        batch = [mixed_message(n) for n in range(start, min(count, start + APPEND_BATCH))]
        total += sum(len(raw) for raw in batch)
        client.multiappend("INBOX", batch)
    client.logout()
    return total


def bare_fetch_and_parse(server: MailServer, user: str, batch_size: int) -> dict[str, float]:
    """One process, one connection: UID FETCH BODY.PEEK[] in batches, mail-parser each."""
    started = time.monotonic()
    client = bare_client(server, user)
    client.select_folder("INBOX", readonly=True)
    uids = client.search("ALL")
    parsed = 0
    for index in range(0, len(uids), batch_size):
        response = client.fetch(uids[index : index + batch_size], [b"BODY.PEEK[]"])
        for data in response.values():
            mailparser.parse_from_bytes(data[b"BODY[]"])
            parsed += 1
    client.logout()
    elapsed = time.monotonic() - started
    return {"messages": parsed, "seconds": round(elapsed, 2), "per_s": round(parsed / elapsed, 1)}


def measure_drain(
    backlog: int, server_kind: str = "dovecot", inline_content: str = "attachments"
) -> dict[str, object]:
    """Messages per second through the service against the bare fetch-and-parse loop, with
    ``IMAP_INLINE_CONTENT=inline_content``."""
    client = redis_client()
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    env = {
        **_single_node(workdir, stream),
        "IMAP_INLINE_CONTENT": inline_content,
    }
    server = start_server(server_kind, workdir, [("svc", PASSWORD)])
    worker = None
    try:
        add_provider(env, server, "svc")
        worker = WorkerProcess.start(env, workdir / "worker.log")  # sets the cursor at 0
        worker.wait_for_idle(1, 60)
        worker.stop()
        total_bytes = fill_backlog(server, "svc", backlog)
        bare = [bare_fetch_and_parse(server, "svc", DEFAULTS.ingest.fetch_batch_size)]
        worker = WorkerProcess.start(env, workdir / "worker.log")
        started = worker.started
        wait_for_length(client, stream, 1, 60)
        first_event = time.monotonic()
        wait_for_length(client, stream, backlog, 1800)
        drained = time.monotonic()
        worker.stop()
        worker = None
        bare.append(bare_fetch_and_parse(server, "svc", DEFAULTS.ingest.fetch_batch_size))
        published = client.xlen(stream)
        stream_bytes = int(client.memory_usage(stream, samples=0) or 0)
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        client.delete(stream)
    from_start_s = drained - started
    best = max(bare, key=lambda b: b["per_s"])
    return {
        "server": server_kind,
        "inline_content": inline_content,
        "messages": backlog,
        "redis_bytes_per_1000_events": stream_bytes * 1000 // max(published, 1),
        "average_kib": round(total_bytes / backlog / 1024, 1),
        "fetch_batch": DEFAULTS.ingest.fetch_batch_size,
        "baseline_passes": bare,
        "baseline_per_s": best["per_s"],
        "service_start_to_last_event_s": round(from_start_s, 2),
        "service_first_to_last_event_s": round(drained - first_event, 2),
        "service_per_s": round(backlog / from_start_s, 1),
        "events_on_stream": published,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--server", choices=SERVERS, default="dovecot")
    args = parser.parse_args()
    result = {
        "latency": measure_latency(args.messages, args.server),
        "drain": measure_drain(args.backlog, args.server),
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latency_and_drain.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
