"""Targets of issue 8 judged on the measured figures, and the Markdown table (pure).

``rows(results)`` takes the dictionary ``python -m bench`` writes as JSON (one key per
measurement that ran) and returns one ``Row`` per figure with its target; measurements that
did not run give no rows. Nothing here measures, reads a clock or touches a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Push latency: the service's p99 may exceed the bare IDLE client's by this much.
LATENCY_P99_MARGIN_MS = 50
#: Fan-out latency: the same with 1,000 folders in one process.
FANOUT_P99_MARGIN_MS = 100
#: Backlog drain: the share of the bare fetch-and-parse rate the service must reach.
DRAIN_MIN_SHARE = 0.8
#: Memory per IDLE folder at the large size (all of the process's RSS divided by folders).
RSS_PER_FOLDER_MAX_KIB = 256
#: Seconds on top of IMAP_STARTUP_STAGGER_MS until every folder must be in IDLE.
STARTUP_SLACK_S = 30
#: Failover with default settings: every folder of the killed worker back in IDLE within.
FAILOVER_MAX_S = 30
#: One catch-up command through the service's session: its p50 may exceed bare's by this.
COMMAND_P50_MARGIN_MS = 5


@dataclass(frozen=True)
class Row:
    measurement: str
    service: str
    baseline: str
    target: str
    #: None when the figure has no target (reported for information).
    met: bool | None


def _latency_row(name: str, figures: Mapping[str, Any], margin_ms: float) -> list[Row]:
    service, baseline = figures["service"], figures["baseline"]
    if "server" in figures:
        name = f"{name} on {figures['server']}"
    exists = figures.get("bare_exists")
    pushed = f"; EXISTS alone {exists['p50_ms']} / {exists['p99_ms']}" if exists else ""
    return [
        Row(
            f"{name} p50 / p99 / max (ms, n={service['n']})",
            f"{service['p50_ms']} / {service['p99_ms']} / {service['max_ms']}",
            f"{baseline['p50_ms']} / {baseline['p99_ms']} / {baseline['max_ms']}{pushed}",
            f"p99 ≤ bare p99 + {margin_ms:g} ms",
            service["p99_ms"] <= baseline["p99_ms"] + margin_ms,
        )
    ]


def _command_rows(commands: Mapping[str, Any]) -> list[Row]:
    out = []
    for name, service in commands["service"].items():
        bare = commands["baseline"][name]
        out.append(
            Row(
                f"catch-up command {name} on {commands['server']} p50 / p99 (ms, n={service['n']})",
                f"{service['p50_ms']} / {service['p99_ms']}",
                f"{bare['p50_ms']} / {bare['p99_ms']} (bare, TCP_NODELAY)",
                f"p50 ≤ bare p50 + {COMMAND_P50_MARGIN_MS:g} ms",
                service["p50_ms"] <= bare["p50_ms"] + COMMAND_P50_MARGIN_MS,
            )
        )
    return out


def _drain_rows(drain: Mapping[str, Any]) -> list[Row]:
    service, baseline = drain["service_per_s"], drain["baseline_per_s"]
    share = service / baseline if baseline else 0.0
    return [
        Row(
            f"backlog drain, {drain['messages']} messages (msg/s)",
            f"{service} ({share:.0%} of bare; {drain['service_start_to_last_event_s']} s "
            "from process start)",
            f"{baseline} (bare fetch + mail-parser, one process)",
            f"≥ {DRAIN_MIN_SHARE:.0%} of bare",
            service >= DRAIN_MIN_SHARE * baseline,
        ),
        Row(
            "going further: backlog drain faster than bare",
            f"{service}",
            f"{baseline}",
            "> bare (optional)",
            service > baseline,
        ),
    ]


def _fanout_rows(fanout: Mapping[str, Any], stagger_ms: int) -> list[Row]:
    folders, small, large = fanout["folders"], fanout["small"], fanout["large"]
    limit_s = stagger_ms / 1000 + STARTUP_SLACK_S
    rows = _latency_row(f"fan-out latency, {folders} IDLE folders", fanout, FANOUT_P99_MARGIN_MS)
    rows += [
        Row(
            f"RSS per IDLE folder at {folders} (KiB)",
            f"{fanout['rss_kib_per_folder']} (process RSS {large['VmRSS']} KiB / {folders}; "
            f"{fanout['rss_kib_per_extra_folder']} per folder beyond {small['folders']})",
            "",
            f"< {RSS_PER_FOLDER_MAX_KIB} KiB",
            fanout["rss_kib_per_folder"] < RSS_PER_FOLDER_MAX_KIB,
        ),
        Row(
            f"RSS and threads at {small['folders']} / {folders} folders",
            f"{small['VmRSS']} KiB, {small['Threads']} threads / "
            f"{large['VmRSS']} KiB, {large['Threads']} threads",
            "",
            "",
            None,
        ),
        Row(
            f"start until all {folders} folders in IDLE (s)",
            f"{large['start_to_all_idle_s']}",
            f"{fanout['baseline_open_all_s']} (bare, opened one after another)",
            f"≤ stagger {stagger_ms / 1000:g} s + {STARTUP_SLACK_S} s",
            large["start_to_all_idle_s"] <= limit_s,
        ),
    ]
    return rows


def _failover_rows(failover: Mapping[str, Any]) -> list[Row]:
    settings = (
        f"lease TTL {failover['lease_ttl_ms']} ms, refresh {failover['provider_refresh_ms']} ms"
        + (" (defaults)" if failover["default_settings"] else "")
    )
    times = ", ".join(f"{t}" for t in failover["failover_s"])
    clean = failover["lost"] == 0 and failover["doubled"] == 0
    return [
        Row(
            f"failover after SIGKILL, {failover['providers']} folders over 3 workers (s)",
            f"max {failover['failover_max_s']}, median {failover['failover_median_s']} "
            f"[{times}]; {settings}",
            "",
            f"< {FAILOVER_MAX_S} s with default settings",
            failover["failover_max_s"] < FAILOVER_MAX_S and bool(failover["default_settings"]),
        ),
        Row(
            "events across the failovers: lost / doubled",
            f"{failover['lost']} / {failover['doubled']} of {failover['delivered']} delivered",
            "",
            "0 / 0",
            clean,
        ),
    ]


def rows(results: Mapping[str, Any]) -> list[Row]:
    """One row per figure of the measurements present in ``results``."""
    stagger_ms = int(results.get("settings", {}).get("startup_stagger_ms", 2000))
    out: list[Row] = []
    if "latency" in results:
        out += _latency_row("push latency, 1 folder", results["latency"], LATENCY_P99_MARGIN_MS)
    if "fanout" in results:
        out += _fanout_rows(results["fanout"], stagger_ms)
    if "drain" in results:
        out += _drain_rows(results["drain"])
    if "failover" in results:
        out += _failover_rows(results["failover"])
    if "commands" in results:
        out += _command_rows(results["commands"])
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(table: list[Row]) -> str:
    """The rows as a Markdown table: measurement, service, baseline, target, met?"""
    lines = [
        "| measurement | service | baseline | target | met? |",
        "|---|---|---|---|---|",
    ]
    for row in table:
        met = "—" if row.met is None else ("yes" if row.met else "**no**")
        cells = [row.measurement, row.service, row.baseline, row.target, met]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
