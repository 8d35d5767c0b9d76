"""Replicas: failover after SIGKILL with no event lost or doubled, balance, shutdown, reconnects.

Run all benchmarks with ``python -m bench``; this one alone with
``python bench/failover.py [--providers 60] [--kills 3] [--lease-ttl-ms MS]``.
Needs PostgreSQL (``BENCH_DATABASE_ADMIN_URL``, default postgresql://postgres@127.0.0.1/postgres;
a scratch database is created and dropped) and Redis (``REDIS_URL``); starts its own Dovecot
and real ``email-service worker`` processes, with the service's default settings unless
``--lease-ttl-ms`` / ``--refresh-ms`` say otherwise.

- failover: three workers share the providers (one INBOX each); one is SIGKILLed right
  after a message was delivered to every provider, and another message is delivered to
  every provider while its leases are orphaned. Timed from the kill until every provider is
  leased by a live worker and every folder is in IDLE again (the workers' own gauges). Then
  every delivered message must be on the stream exactly once.
- balance: leases per worker after start and after the failover, against the even share.
- shutdown: SIGTERM to exit, with all leases released.
- reconnect rate: login attempts in a window against a server that accepts the login and
  drops the session, with the default backoff settings.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BENCH_TENANT,
    ROOT,
    WorkerProcess,
    add_providers,
    plain_db_url,
    redis_client,
    scratch_database,
    worker_env,
)
from email_service.devserver.dovecot import DovecotServer, start_dovecot
from email_service.devserver.fake_imap import FakeImapServer
from email_service.devserver.samples import make_message
from email_service.security.secretbox import generate_key
from email_service.settings import default_of

#: Seconds allowed for any one wait (balance, takeover, events on the stream).
WAIT_S = 180


def lease_counts(db_url: str) -> tuple[Counter[str], int]:
    """Leases per owner whose lease is live, and how many providers have no live lease."""
    with psycopg.connect(db_url) as connection:
        rows = connection.execute(
            "SELECT lease_owner, lease_expires_at > now() FROM imap_email_provider_config"
        ).fetchall()
    counts: Counter[str] = Counter()
    missing = 0
    for owner, live in rows:
        if owner and live:
            counts[owner] += 1
        else:
            missing += 1
    return counts, missing


def idle_total(workers: list[WorkerProcess]) -> int:
    return sum(worker.listeners("idle") for worker in workers if worker.alive())


def wait_held(db_url: str, workers: list[WorkerProcess], providers: int, owners: int) -> float:
    """Seconds until every provider is leased by one of ``owners`` live workers and every
    folder is in IDLE."""
    started = time.monotonic()
    while time.monotonic() - started < WAIT_S:
        counts, missing = lease_counts(db_url)
        if missing == 0 and len(counts) <= owners and idle_total(workers) >= providers:
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"providers not held and in IDLE within {WAIT_S}s: {counts}")


def wait_balanced(db_url: str, workers: list[WorkerProcess], providers: int) -> Counter[str]:
    """Wait until every live worker holds leases, all providers are held and in IDLE."""
    started = time.monotonic()
    while time.monotonic() - started < WAIT_S:
        counts, missing = lease_counts(db_url)
        if missing == 0 and len(counts) == len(workers) and idle_total(workers) >= providers:
            return counts
        time.sleep(0.1)
    raise RuntimeError(f"not balanced over {len(workers)} workers within {WAIT_S}s")


def spread(counts: Counter[str], total: int) -> str:
    even = total / max(len(counts), 1)
    worst = max(abs(c - even) / even for c in counts.values()) * 100
    return f"{sorted(counts.values())} (even {even:.1f}, worst {worst:.0f}% off)"


def deliver_round(dovecot: DovecotServer, users: list[str], label: str) -> list[str]:
    """One message to every user; returns their Message-IDs."""
    ids = []
    for user in users:
        message_id = f"<{label}-{user}@bench>"
        dovecot.deliver(user, make_message(label, message_id=message_id))
        ids.append(message_id)
    return ids


def check_stream(stream: str, expected: list[str]) -> dict[str, int]:
    """Wait until every expected Message-ID is on the stream; count missing and doubled."""
    client = redis_client()
    deadline = time.monotonic() + WAIT_S
    while True:
        seen: Counter[str] = Counter()
        for _entry_id, fields in client.xrange(stream):
            payload = json.loads(fields[b"payload_json"])
            seen[payload["emailData"]["id"]] += 1
        missing = [m for m in expected if seen[m] == 0]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return {
        "delivered": len(expected),
        "events": sum(seen.values()),
        "lost": len(missing),
        "doubled": sum(1 for m in expected if seen[m] > 1),
    }


def reconnect_rate(window_s: float) -> list[float]:
    """Login times (s from start) in ``window_s`` against a server that drops every session
    right after LOGIN, with the default backoff settings."""
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    env = worker_env(
        f"sqlite:///{workdir / 'rate.db'}",
        generate_key(),
        "bench:rate",
        EMAIL_SERVICE_LOG_LEVEL="error",
        IMAP_STARTUP_STAGGER_MS="0",
    )
    with FakeImapServer.start(drop_after="LOGIN") as server:
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
                "n",
                "--mailbox",
                "m@x",
                "--host",
                "127.0.0.1",
                "--port",
                str(server.port),
                "--security",
                "none",
                "--username",
                "u",
                "--password-stdin",
            ],
            env={**os.environ, **env},
            input=b"pw\n",
            check=True,
            capture_output=True,
        )
        worker = WorkerProcess.start(env, workdir / "worker.log")
        time.sleep(window_s)  # the observation window itself
        worker.stop()
        return [round(t - worker.started, 2) for t in server.login_times()]


def measure_failover(
    providers: int,
    kills: int,
    *,
    lease_ttl_ms: int | None = None,
    refresh_ms: int | None = None,
    rate_window_s: float = 60,
) -> dict[str, object]:
    """Failover, balance and shutdown of three workers; defaults unless overridden."""
    overrides = {}
    if lease_ttl_ms is not None:
        overrides["IMAP_LEASE_TTL_MS"] = str(lease_ttl_ms)
    if refresh_ms is not None:
        overrides["IMAP_PROVIDER_REFRESH_MS"] = str(refresh_ms)
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    key = generate_key()
    users = [f"user{n}" for n in range(providers)]
    dovecot = start_dovecot(workdir / "dovecot")
    workers: list[WorkerProcess] = []
    failovers: list[float] = []
    expected: list[str] = []
    try:
        with scratch_database() as sa_url:
            db_url = plain_db_url(sa_url)
            add_providers(sa_url, key, dovecot, users, tenants=5)
            env = worker_env(sa_url, key, stream, **overrides)

            def start(n: int) -> WorkerProcess:
                return WorkerProcess.start(env, workdir / f"w{n}.log")

            started = time.monotonic()
            workers = [start(n) for n in range(3)]
            balance_start = spread(wait_balanced(db_url, workers, providers), providers)
            start_s = time.monotonic() - started
            balance_after = ""
            for kill in range(kills):
                expected += deliver_round(dovecot, users, f"before-kill-{kill}")
                victim = workers.pop(0)
                victim.process.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                victim.process.wait(10)
                expected += deliver_round(dovecot, users, f"after-kill-{kill}")
                wait_held(db_url, workers, providers, 2)
                failovers.append(time.monotonic() - killed_at)
                balance_after = spread(wait_balanced(db_url, workers, providers), providers)
                workers.append(start(3 + kill))
                wait_balanced(db_url, workers, providers)
            events = check_stream(stream, expected)
            shutdown_started = time.monotonic()
            for worker in workers:
                worker.process.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.process.wait(60)
            shutdown_s = time.monotonic() - shutdown_started
            counts, _ = lease_counts(db_url)
            leftover = sum(counts.values())
    finally:
        for worker in workers:
            if worker.alive():
                worker.process.kill()
        dovecot.stop()
        redis_client().delete(stream)
    logins = reconnect_rate(rate_window_s) if rate_window_s > 0 else []
    return {
        "providers": providers,
        "lease_ttl_ms": lease_ttl_ms or default_of("IMAP_LEASE_TTL_MS"),
        "provider_refresh_ms": refresh_ms or default_of("IMAP_PROVIDER_REFRESH_MS"),
        "startup_stagger_ms": default_of("IMAP_STARTUP_STAGGER_MS"),
        "default_settings": lease_ttl_ms is None and refresh_ms is None,
        "start_to_balanced_s": round(start_s, 2),
        "balance_at_start": balance_start,
        "failover_s": [round(f, 2) for f in failovers],
        "failover_median_s": round(statistics.median(failovers), 2),
        "failover_max_s": round(max(failovers), 2),
        "balance_after_failover": balance_after,
        **events,
        "shutdown_s_three_workers": round(shutdown_s, 2),
        "leases_left_after_shutdown": leftover,
        "logins_in_window_for_failing_account": len(logins),
        "login_times_s": logins,
        "rate_window_s": rate_window_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--providers", type=int, default=60)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--lease-ttl-ms", type=int, default=None)
    parser.add_argument("--refresh-ms", type=int, default=None)
    parser.add_argument("--rate-window-s", type=float, default=60)
    args = parser.parse_args()
    result = measure_failover(
        args.providers,
        args.kills,
        lease_ttl_ms=args.lease_ttl_ms,
        refresh_ms=args.refresh_ms,
        rate_window_s=args.rate_window_s,
    )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "failover.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
