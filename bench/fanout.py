"""Many folders in one worker: fan-out latency, memory and threads per IDLE folder, start-up.

Run: ``python bench/fanout.py [--folders 1000] [--deliveries 200] [--small 200]``.
Needs PostgreSQL (``BENCH_DATABASE_ADMIN_URL``) and Redis (``REDIS_URL``); starts its own
Dovecot (users with five folders each, so every folder fits the default per-account budget
of five connections and is held in IDLE). Raises ``fs.inotify.max_user_instances`` first
(Dovecot falls back to 30 s polling beyond 128 IDLE processes otherwise).

- baseline: one bare process holding the same IDLE connections (imapclient, TLS); each
  delivery timed to EXISTS plus ``UID FETCH BODY.PEEK[]`` on that folder's connection.
- service: one ``email-service worker`` holding all folders; each delivery timed to its
  entry on the stream. Also RSS and threads with ``--small`` and with all folders, and the
  time from process start until every folder is in IDLE.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import imapclient
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.latency_and_drain import summary_ms  # noqa: E402
from email_service.devserver.dovecot import DovecotServer, start_dovecot  # noqa: E402
from email_service.model import ImapEndpoint, NewProvider, Security  # noqa: E402
from email_service.secretbox import SecretBox, generate_key  # noqa: E402
from email_service.store.engine import make_engine  # noqa: E402
from email_service.store.migrate import upgrade_database  # noqa: E402
from email_service.store.providers import ProviderStore  # noqa: E402
from email_service.store.secrets import SecretStore  # noqa: E402
from tests.e2e.test_worker_process import free_port  # noqa: E402
from tests.helpers import make_message  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1/postgres")
FOLDERS_PER_USER = 5
#: Pause before each timed delivery so the client under test is back in IDLE.
GAP_S = 0.2


def raise_inotify_limit() -> None:
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    if int(path.read_text()) < 8192:
        try:
            path.write_text("8192")
        except OSError as exc:
            print(
                f"warning: cannot raise {path} ({exc}); latencies beyond ~128 IDLE "
                "connections will show Dovecot's 30 s fallback poll",
                file=sys.stderr,
            )


def folder_names() -> list[str]:
    return ["INBOX"] + [f"Queue{n}" for n in range(1, FOLDERS_PER_USER)]


def bare_baseline(
    dovecot: DovecotServer,
    users: list[str],
    deliveries: list[tuple[str, str]],
) -> tuple[list[float], float]:
    """Latencies with one bare process holding every folder in IDLE; and its open time."""
    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    clients: dict[tuple[str, str], imapclient.IMAPClient] = {}
    started = time.monotonic()
    for user in users:
        for folder in folder_names():
            client = imapclient.IMAPClient(
                "localhost", port=dovecot.imaps_port, ssl_context=context
            )
            client.login(user, "pw")
            client.select_folder(folder, readonly=True)
            client.idle()
            clients[(user, folder)] = client
    open_s = time.monotonic() - started
    latencies = []
    for user, folder in deliveries:
        client = clients[(user, folder)]
        time.sleep(GAP_S)
        begun = time.monotonic()
        dovecot.deliver(user, make_message("fan-out"), folder=folder)
        while True:
            try:
                if any(r[1] == b"EXISTS" for r in client.idle_check(timeout=10)):
                    break
            except imapclient.exceptions.ProtocolError:
                break  # imapclient split a line; the data arrived
        client.idle_done()
        uids = client.search(["UID", "1:*"])
        client.fetch([max(uids)], [b"BODY.PEEK[]"])
        latencies.append(time.monotonic() - begun)
        client.idle()
    for client in clients.values():
        try:
            client.idle_done()
            client.logout()
        except Exception:
            client.shutdown()
    return latencies, open_s


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            fields[name] = int(value.split()[0])
    return fields


def idle_count(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith('email_service_listeners{state="idle"}'):
            return int(float(line.split()[-1]))
    return 0


def run_worker(
    env: dict[str, str], workdir: Path, expected_idle: int
) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    started = time.monotonic()
    with (workdir / "worker.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "email_service", "worker", "--http-port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    while idle_count(port) < expected_idle:
        if process.poll() is not None or time.monotonic() - started > 300:
            raise SystemExit(f"worker did not reach {expected_idle} IDLE folders")
        time.sleep(0.2)
    return process, port, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folders", type=int, default=1000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=200)
    args = parser.parse_args()
    raise_inotify_limit()
    user_count = args.folders // FOLDERS_PER_USER
    small_users = args.small // FOLDERS_PER_USER
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    name = f"email_service_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    sa_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    sa_url += f"/{name}"
    upgrade_database(sa_url)
    key = generate_key()
    stream = f"bench:{name}"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    rclient: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    env = {
        "DATABASE_URL": sa_url,
        "REDIS_URL": redis_url,
        "EMAIL_SERVICE_SECRET_KEYS": key,
        "EMAIL_SERVICE_EVENT_STREAM": stream,
        "EMAIL_SERVICE_LOG_LEVEL": "warning",
        "IMAP_STARTUP_STAGGER_MS": "2000",
    }
    dovecot = start_dovecot(workdir / "dovecot", max_connections=2 * args.folders + 100)
    users = [f"user{n}" for n in range(user_count)]
    engine = make_engine(sa_url)
    providers, secrets = ProviderStore(engine), SecretStore(engine, SecretBox((key,)))
    provider_ids = []
    for user in users:
        dovecot.add_user(user, "pw")
        for folder in folder_names()[1:]:
            dovecot.create_folder(user, folder)
        provider_id = providers.add_provider(
            NewProvider(
                tenant=f"tenant-{len(provider_ids) % 20}",
                name=user,
                mailbox=f"{user}@localhost",
                username=user,
                folders=tuple(folder_names()),
                endpoint=ImapEndpoint(
                    "localhost", dovecot.imaps_port, Security.TLS, tls_ca_file=str(dovecot.ca_file)
                ),
            )
        )
        secrets.save_secret(
            f"tenant-{len(provider_ids) % 20}", f"imap_password_{provider_id}", "pw"
        )
        provider_ids.append(provider_id)
    rng = random.Random(7)
    deliveries = [(rng.choice(users), rng.choice(folder_names())) for _ in range(args.deliveries)]
    result: dict[str, object] = {"folders": args.folders, "deliveries": args.deliveries}
    worker = None
    try:
        baseline, open_s = bare_baseline(dovecot, users, deliveries)
        result["baseline_bare_idle"] = summary_ms(baseline)
        result["baseline_open_all_s"] = round(open_s, 1)

        with engine.begin() as connection:  # the small run: only the first providers active
            for provider_id in provider_ids[small_users:]:
                connection.exec_driver_sql(
                    "UPDATE email_providers SET is_active = false WHERE id = %(id)s",
                    {"id": provider_id},
                )
        worker, _port, small_start_s = run_worker(env, workdir, args.small)
        time.sleep(5)  # let start-up garbage settle before reading RSS
        result["small"] = {
            "folders": args.small,
            **proc_status(worker.pid),
            "start_to_all_idle_s": round(small_start_s, 1),
        }
        worker.terminate()
        worker.wait(60)

        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE email_providers SET is_active = true")
        worker, _port, start_s = run_worker(env, workdir, args.folders)
        time.sleep(5)
        result["large"] = {
            "folders": args.folders,
            **proc_status(worker.pid),
            "start_to_all_idle_s": round(start_s, 1),
        }
        latencies = []
        before = rclient.xlen(stream)
        for n, (user, folder) in enumerate(deliveries):
            time.sleep(GAP_S)
            begun = time.monotonic()
            dovecot.deliver(user, make_message(f"fan-out {n}"), folder=folder)
            while rclient.xlen(stream) < before + n + 1:
                if time.monotonic() - begun > 30:
                    raise SystemExit(f"delivery {n} to {user}/{folder} not published in 30 s")
                time.sleep(0.001)
            latencies.append(time.monotonic() - begun)
        result["service"] = summary_ms(latencies)
        small, large = result["small"], result["large"]
        assert isinstance(small, dict) and isinstance(large, dict)
        result["rss_kib_per_extra_folder"] = round(
            (large["VmRSS"] - small["VmRSS"]) / (args.folders - args.small), 1
        )
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(60)
        engine.dispose()
        dovecot.stop()
        rclient.delete(stream)
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "fanout.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    b, s = result["baseline_bare_idle"], result["service"]
    assert isinstance(b, dict) and isinstance(s, dict)
    print(f"\n| {args.folders} IDLE folders, delivery → event (ms) | p50 | p99 | max |")
    print("|---|---|---|---|")
    print(f"| bare process, same connections | {b['p50_ms']} | {b['p99_ms']} | {b['max_ms']} |")
    print(f"| email-service worker | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} |")
    print(f"\nmedian of {statistics.median(baseline) * 1000:.0f} ms bare")


if __name__ == "__main__":
    main()
