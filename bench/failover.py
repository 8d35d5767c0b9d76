"""Replicas: failover time after SIGKILL, share balance, shutdown time, reconnect rate.

Run: ``python bench/failover.py [--providers 60] [--kills 3] [--lease-ttl-ms 5000]``.
Needs PostgreSQL (``BENCH_DATABASE_ADMIN_URL``, default postgresql://postgres@127.0.0.1/postgres;
a scratch database is created and dropped) and Redis (``REDIS_URL``); starts its own Dovecot
and real ``email-service worker`` processes. Prints a Markdown table, writes JSON to
bench/results/.

- failover: three workers share the providers; one is SIGKILLed; the time until every
  provider is again leased by a live worker and connected. Expected: about the lease TTL
  plus one refresh (the dead worker's leases must expire first).
- balance: leases per worker after start and after the failover, against the even share.
- shutdown: SIGTERM to exit, with all leases released.
- reconnect rate: login attempts in 60 s against a server that accepts the login and drops
  the session, with the default backoff settings.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from email_service.devserver.dovecot import start_dovecot  # noqa: E402
from email_service.model import ImapEndpoint, NewProvider, Security  # noqa: E402
from email_service.secretbox import SecretBox, generate_key  # noqa: E402
from email_service.store.engine import make_engine  # noqa: E402
from email_service.store.migrate import upgrade_database  # noqa: E402
from email_service.store.providers import ProviderStore  # noqa: E402
from email_service.store.secrets import SecretStore  # noqa: E402
from tests.fake_imap import FakeImapServer  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1/postgres")
REFRESH_MS = 500


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "email_service", "worker", "--http-port", "0"],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process.poll() is None


def lease_counts(db_url: str) -> tuple[Counter[str], int]:
    """Leases per live owner, and how many providers are not yet held and connected."""
    with psycopg.connect(db_url) as connection:
        rows = connection.execute(
            "SELECT c.lease_owner, c.lease_expires_at > now(), p.status "
            "FROM imap_email_provider_config c JOIN email_providers p "
            "ON p.id = c.email_provider_id AND p.tenant = c.tenant"
        ).fetchall()
    counts: Counter[str] = Counter()
    missing = 0
    for owner, live, status in rows:
        if owner and live and status == "connected":
            counts[owner] += 1
        else:
            missing += 1
    return counts, missing


def wait_balanced(db_url: str, workers: int, timeout_s: float) -> tuple[float, Counter[str]]:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        counts, missing = lease_counts(db_url)
        if missing == 0 and len(counts) == workers:
            return time.monotonic() - started, counts
        time.sleep(0.05)
    raise SystemExit(f"not balanced over {workers} workers within {timeout_s}s: {counts}")


def wait_all_held(db_url: str, live: int, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        counts, missing = lease_counts(db_url)
        if missing == 0 and len(counts) <= live:
            return time.monotonic() - started
        time.sleep(0.02)
    raise SystemExit("providers were not taken over in time")


def spread(counts: Counter[str], total: int) -> str:
    even = total / max(len(counts), 1)
    worst = max(abs(c - even) / even for c in counts.values()) * 100
    return f"{sorted(counts.values())} (even {even:.1f}, worst {worst:.0f}% off)"


def reconnect_rate(window_s: float) -> list[float]:
    """Login times (s from start) in ``window_s`` against a server that drops every session
    right after LOGIN, with the default backoff settings."""
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    env = {
        "DATABASE_URL": f"sqlite:///{workdir / 'rate.db'}",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "EMAIL_SERVICE_SECRET_KEYS": generate_key(),
        "EMAIL_SERVICE_LOG_LEVEL": "error",
        "IMAP_STARTUP_STAGGER_MS": "0",
    }
    with FakeImapServer.start(drop_after="LOGIN") as server:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "email_service",
                "provider",
                "add",
                "--tenant",
                "t",
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
        started = time.monotonic()
        worker = Worker(env, workdir / "worker.log")
        time.sleep(window_s)  # the observation window itself
        worker.process.send_signal(signal.SIGTERM)
        worker.process.wait(30)
        return [round(t - started, 2) for t in server.login_times()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--providers", type=int, default=60)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--lease-ttl-ms", type=int, default=5000)
    parser.add_argument("--rate-window-s", type=float, default=60)
    args = parser.parse_args()

    name = f"email_service_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    sa_url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    upgrade_database(sa_url)
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    key = generate_key()
    env = {
        "DATABASE_URL": sa_url,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "EMAIL_SERVICE_SECRET_KEYS": key,
        "EMAIL_SERVICE_EVENT_STREAM": f"bench:{name}",
        "IMAP_LEASE_TTL_MS": str(args.lease_ttl_ms),
        "IMAP_PROVIDER_REFRESH_MS": str(REFRESH_MS),
        "IMAP_STARTUP_STAGGER_MS": "0",
        "EMAIL_SERVICE_LOG_LEVEL": "warning",
    }
    dovecot = start_dovecot(workdir / "dovecot")
    engine = make_engine(sa_url)
    providers, secrets = ProviderStore(engine), SecretStore(engine, SecretBox((key,)))
    for n in range(args.providers):
        user = f"user{n}"
        dovecot.add_user(user, "pw")
        provider_id = providers.add_provider(
            NewProvider(
                tenant=f"tenant-{n % 5}",
                name=user,
                mailbox=f"{user}@localhost",
                username=user,
                endpoint=ImapEndpoint(
                    "localhost", dovecot.imaps_port, Security.TLS, tls_ca_file=str(dovecot.ca_file)
                ),
            )
        )
        secrets.save_secret(f"tenant-{n % 5}", f"imap_password_{provider_id}", "pw")
    engine.dispose()
    workers: list[Worker] = []
    failovers: list[float] = []
    try:
        workers = [Worker(env, workdir / f"w{n}.log") for n in range(3)]
        start_s, counts = wait_balanced(db_url, 3, 120)
        balance_start = spread(counts, args.providers)
        for _ in range(args.kills):
            victim = workers.pop(0)
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(10)
            failovers.append(wait_all_held(db_url, 2, 120))
            _, counts = wait_balanced(db_url, 2, 120)
            balance_after = spread(counts, args.providers)
            workers.append(Worker(env, workdir / f"w{len(failovers)}.log"))
            wait_balanced(db_url, 3, 120)
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
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    logins = reconnect_rate(args.rate_window_s)
    result = {
        "providers": args.providers,
        "lease_ttl_ms": args.lease_ttl_ms,
        "refresh_ms": REFRESH_MS,
        "start_to_balanced_s": round(start_s, 2),
        "balance_at_start": balance_start,
        "failover_s": [round(f, 2) for f in failovers],
        "failover_median_s": round(statistics.median(failovers), 2),
        "balance_after_failover": balance_after,
        "shutdown_s_three_workers": round(shutdown_s, 2),
        "leases_left_after_shutdown": leftover,
        "logins_in_window_for_failing_account": len(logins),
        "login_times_s": logins,
        "rate_window_s": args.rate_window_s,
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "failover.json").write_text(json.dumps(result, indent=2))
    print("| figure | value |\n|---|---|")
    for name_, value in result.items():
        print(f"| {name_} | {value} |")


if __name__ == "__main__":
    main()
