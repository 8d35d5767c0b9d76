"""Many folders in one worker: fan-out latency, memory and threads per IDLE folder, start-up.

Run all benchmarks with ``python -m bench``; this one alone with
``python bench/fanout.py [--folders 1000] [--deliveries 200] [--small 200]``.
Needs PostgreSQL (``BENCH_DATABASE_ADMIN_URL``) and Redis (``REDIS_URL``); starts its own
Dovecot (users with five folders each, so every folder fits the default per-account budget
of five connections and is held in IDLE). Raises ``fs.inotify.max_user_instances`` first
(Dovecot falls back to 30 s polling beyond 128 IDLE processes otherwise).

- baseline: one bare process holding the same IDLE connections (imapclient, TLS, opened one
  after the other); each delivery timed to EXISTS plus ``UID FETCH BODY.PEEK[]`` on that
  folder's connection.
- service: one ``email-service worker`` (default settings: IMAP_STARTUP_STAGGER_MS 2000)
  holding all folders; each delivery timed to its entry on the stream. Also RSS and threads
  with ``--small`` and with all folders, and the time from process start until every folder
  is in IDLE by the worker's own gauge (read from /metrics every 50 ms).
"""

from __future__ import annotations

import argparse
import json
import random
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path

import imapclient

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    FOLDERS_PER_USER,
    PASSWORD,
    ROOT,
    WorkerProcess,
    add_providers,
    folder_names,
    raise_inotify_limit,
    redis_client,
    scratch_database,
    summary_ms,
    wait_for_exists,
    worker_env,
)
from email_service.devserver.dovecot import DovecotServer, start_dovecot
from email_service.devserver.samples import make_message
from email_service.security.secretbox import generate_key
from email_service.store.engine import make_engine

#: Pause before each timed delivery so the client under test is back in IDLE.
GAP_S = 0.2
#: Seconds to let start-up garbage settle before RSS is read.
SETTLE_S = 5


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
            client.login(user, PASSWORD)
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
        wait_for_exists(client, 10)
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


def _set_active(sa_url: str, provider_ids: list[str], active: bool) -> None:
    engine = make_engine(sa_url)
    try:
        with engine.begin() as connection:
            for provider_id in provider_ids:
                connection.exec_driver_sql(
                    "UPDATE email_providers SET is_active = %(active)s WHERE id = %(id)s",
                    {"id": provider_id, "active": active},
                )
    finally:
        engine.dispose()


def measure_fanout(folders: int, small: int, deliveries: int) -> dict[str, object]:
    """Latency, footprint and start-up of one worker holding ``folders`` IDLE folders."""
    raise_inotify_limit()
    users = [f"user{n}" for n in range(folders // FOLDERS_PER_USER)]
    small_users = small // FOLDERS_PER_USER
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    rclient = redis_client()
    stream = f"bench:{uuid.uuid4().hex[:8]}"
    key = generate_key()
    rng = random.Random(7)
    plan = [(rng.choice(users), rng.choice(folder_names())) for _ in range(deliveries)]
    result: dict[str, object] = {"folders": folders, "deliveries": deliveries}
    dovecot = start_dovecot(workdir / "dovecot", max_connections=2 * folders + 100)
    worker = None
    try:
        with scratch_database() as sa_url:
            ids = add_providers(sa_url, key, dovecot, users, folders=tuple(folder_names()))
            env = worker_env(sa_url, key, stream)
            baseline, open_s = bare_baseline(dovecot, users, plan)
            result["baseline"] = summary_ms(baseline)
            result["baseline_open_all_s"] = round(open_s, 1)

            _set_active(sa_url, ids[small_users:], False)  # the small run: the first ones
            worker = WorkerProcess.start(env, workdir / "worker.log")
            small_start_s = worker.wait_for_idle(small, 300)
            time.sleep(SETTLE_S)
            result["small"] = {
                "folders": small,
                **worker.proc_status(),
                "start_to_all_idle_s": round(small_start_s, 1),
            }
            worker.stop()

            _set_active(sa_url, ids[small_users:], True)
            worker = WorkerProcess.start(env, workdir / "worker.log")
            start_s = worker.wait_for_idle(folders, 300)
            time.sleep(SETTLE_S)
            large = {
                "folders": folders,
                **worker.proc_status(),
                "start_to_all_idle_s": round(start_s, 1),
            }
            result["large"] = large
            latencies = []
            before = rclient.xlen(stream)
            for n, (user, folder) in enumerate(plan):
                time.sleep(GAP_S)
                begun = time.monotonic()
                dovecot.deliver(user, make_message(f"fan-out {n}"), folder=folder)
                while rclient.xlen(stream) < before + n + 1:
                    if time.monotonic() - begun > 30:
                        raise RuntimeError(f"delivery {n} to {user}/{folder} not published")
                    time.sleep(0.001)
                latencies.append(time.monotonic() - begun)
            result["service"] = summary_ms(latencies)
            worker.stop()
            worker = None
    finally:
        if worker is not None:
            worker.stop()
        dovecot.stop()
        rclient.delete(stream)
    small_status = result["small"]
    assert isinstance(small_status, dict)
    result["rss_kib_per_folder"] = round(large["VmRSS"] / folders, 1)
    result["rss_kib_per_extra_folder"] = round(
        (large["VmRSS"] - small_status["VmRSS"]) / (folders - small), 1
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--folders", type=int, default=1000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=200)
    args = parser.parse_args()
    result = measure_fanout(args.folders, args.small, args.deliveries)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "fanout.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
