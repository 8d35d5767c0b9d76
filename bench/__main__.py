"""Every benchmark of the service against the bare limits of the same machine, in one run.

    python -m bench                          # all of them, full size (about 30 minutes)
    python -m bench --quick                  # smaller sizes (a few minutes)
    python -m bench --only latency,drain     # a subset: latency, fanout, drain, failover,
                                             # commands
    python -m bench --only latency,commands --server cyrus   # against Cyrus IMAP

Writes ``bench/results/<timestamp>.json`` and ``bench/results/<timestamp>.md`` (the table,
also printed): measurement, service, baseline, target, met?. Timing figures are reported
here and never asserted in tests. Needs PostgreSQL (``BENCH_DATABASE_ADMIN_URL``, default
postgresql://postgres@127.0.0.1/postgres) and Redis (``REDIS_URL``); starts its own Dovecot
instances. Run as root, or with ``fs.inotify.max_user_instances`` raised beforehand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, SERVERS
from bench.report import render_markdown, rows

MEASUREMENTS = ("latency", "fanout", "drain", "failover", "commands")

#: Sizes of a full run (the issue's) and of ``--quick``.
FULL = {
    "messages": 200,
    "folders": 1000,
    "small": 200,
    "deliveries": 200,
    "backlog": 10_000,
    "providers": 60,
    "kills": 3,
    "rate_window_s": 60.0,
    "repeat": 200,
}
QUICK = {
    "messages": 20,
    "folders": 100,
    "small": 50,
    "deliveries": 20,
    "backlog": 1000,
    "providers": 15,
    "kills": 1,
    "rate_window_s": 0.0,
    "repeat": 50,
}


def parse_only(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MEASUREMENTS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown measurement {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--only",
        type=parse_only,
        default=list(MEASUREMENTS),
        help=f"comma-separated subset of {','.join(MEASUREMENTS)}",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    for name, value in FULL.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(value),
            default=None,
            help=f"default {value} ({QUICK[name]} with --quick)",
        )
    parser.add_argument(
        "--lease-ttl-ms",
        type=int,
        default=None,
        help="failover with this IMAP_LEASE_TTL_MS instead of the default (target not judged)",
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="dovecot",
        help="the IMAP server of latency, drain and commands (fanout and failover: Dovecot)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return parser


def sizes(args: argparse.Namespace) -> dict[str, Any]:
    base = QUICK if args.quick else FULL
    return {name: getattr(args, name) or value for name, value in base.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.commands import measure_commands
    from bench.failover import measure_failover
    from bench.fanout import measure_fanout
    from bench.latency_and_drain import measure_drain, measure_latency
    from email_service.settings import default_of

    size = sizes(args)
    steps: dict[str, Callable[[], dict[str, object]]] = {
        "latency": lambda: measure_latency(size["messages"], args.server),
        "fanout": lambda: measure_fanout(size["folders"], size["small"], size["deliveries"]),
        "drain": lambda: {
            **measure_drain(size["backlog"], args.server, "attachments"),
            "content_off": measure_drain(size["backlog"], args.server, "off"),
        },
        "failover": lambda: measure_failover(
            size["providers"],
            size["kills"],
            lease_ttl_ms=args.lease_ttl_ms,
            rate_window_s=size["rate_window_s"],
        ),
        "commands": lambda: measure_commands(size["repeat"], args.server),
    }
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "sizes": size,
        "settings": {
            "startup_stagger_ms": default_of("IMAP_STARTUP_STAGGER_MS"),
            "lease_ttl_ms": default_of("IMAP_LEASE_TTL_MS"),
            "provider_refresh_ms": default_of("IMAP_PROVIDER_REFRESH_MS"),
            "fetch_batch_size": default_of("IMAP_FETCH_BATCH_SIZE"),
        },
    }
    for name in MEASUREMENTS:
        if name not in args.only:
            continue
        print(f"==> {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        results[name] = steps[name]()
        results.setdefault("durations_s", {})[name] = round(time.monotonic() - started, 1)
    return results


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    results = run(args)
    table = render_markdown(rows(results))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    header = f"`{results['command']}` at {results['started_at']} ({results['machine']})\n\n"
    (args.out / f"{stamp}.md").write_text(header + table)
    print(header + table)
    print(f"written: {args.out / stamp}.json and .md")


if __name__ == "__main__":
    main()
