"""IMAP connections one tenant holds with many active providers over two workers.

    python bench/tenant_cap.py [--providers 120] [--cap 50] [--seconds 30]

Creates ``--providers`` Dovecot users and one provider each, all of ONE tenant (one
folder each), starts two ``email-service worker`` processes with
``IMAP_MAX_CONNECTIONS_PER_TENANT=--cap``, and samples the established connections to
Dovecot's port (``/proc/net/tcp``) every 0.2 s for ``--seconds`` once both hold their
leases. Then it delivers one message to every mailbox and times until every event is on
the stream (nothing lost, however the connections are shared). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    WorkerProcess,
    add_providers,
    raise_inotify_limit,
    redis_client,
    scratch_database,
    wait_for_length,
    worker_env,
)
from email_service.devserver.connections import count_connections_to
from email_service.devserver.dovecot import start_dovecot
from email_service.devserver.samples import make_message
from email_service.security.secretbox import generate_key


def measure(providers: int, cap: int, seconds: float) -> dict[str, Any]:
    raise_inotify_limit()
    tenant = str(uuid.uuid4())
    stream = f"bench:tenant-cap:{uuid.uuid4().hex[:8]}"
    key = generate_key()
    users = [f"cap{n:04d}" for n in range(providers)]
    result: dict[str, Any] = {"providers": providers, "cap": cap, "workers": 2}
    with tempfile.TemporaryDirectory() as tmp, scratch_database() as database_url:
        dovecot = start_dovecot(Path(tmp) / "dovecot")
        add_providers(database_url, key, dovecot, users, tenant=tenant, plain=True)
        env = worker_env(
            database_url,
            key,
            stream,
            IMAP_MAX_CONNECTIONS_PER_TENANT=str(cap),
            IMAP_POLL_INTERVAL_MS="5000",
        )
        workers = [WorkerProcess.start(env, Path(tmp) / f"worker{n}.log") for n in range(2)]
        redis = redis_client()
        try:
            time.sleep(15)  # both registered, leases shared, connections planned
            samples = []
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                samples.append(count_connections_to(dovecot.imap_port))
                time.sleep(0.2)
            result["connections"] = {
                "max": max(samples),
                "median": statistics.median(samples),
                "min": min(samples),
                "samples": len(samples),
            }
            result["listeners"] = {
                state: sum(w.listeners(state) for w in workers)
                for state in ("idle", "polling", "waiting", "connecting", "backoff")
            }
            started = time.monotonic()
            for user in users:
                dovecot.deliver(user, make_message(f"to {user}"))
            wait_for_length(redis, stream, providers, timeout_s=120)
            result["all_events_after_s"] = round(time.monotonic() - started, 1)
        finally:
            for worker in workers:
                worker.stop()
            redis.delete(stream)
            redis.close()
            dovecot.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=120)
    parser.add_argument("--cap", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    print(json.dumps(measure(args.providers, args.cap, args.seconds), indent=2))


if __name__ == "__main__":
    main()
