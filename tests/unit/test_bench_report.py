"""The benchmark's targets and table, on made-up figures (nothing is timed here)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench.__main__ import QUICK, build_parser, sizes
from bench.report import render_markdown, rows

RESULTS: dict[str, Any] = {
    "settings": {"startup_stagger_ms": 2000},
    "latency": {
        "baseline": {"n": 200, "p50_ms": 505.0, "p99_ms": 540.0, "max_ms": 560.0},
        "service": {"n": 200, "p50_ms": 510.0, "p99_ms": 560.0, "max_ms": 600.0},
    },
    "fanout": {
        "folders": 1000,
        "baseline": {"n": 200, "p50_ms": 505.0, "p99_ms": 560.0, "max_ms": 600.0},
        "service": {"n": 200, "p50_ms": 510.0, "p99_ms": 600.0, "max_ms": 700.0},
        "baseline_open_all_s": 12.0,
        "small": {"folders": 200, "VmRSS": 100_000, "Threads": 202},
        "large": {
            "folders": 1000,
            "VmRSS": 200_000,
            "Threads": 1002,
            "start_to_all_idle_s": 25.0,
        },
        "rss_kib_per_folder": 200.0,
        "rss_kib_per_extra_folder": 125.0,
    },
    "drain": {
        "messages": 10_000,
        "service_per_s": 600.0,
        "baseline_per_s": 700.0,
        "service_start_to_last_event_s": 16.7,
    },
    "failover": {
        "providers": 60,
        "lease_ttl_ms": 15000,
        "provider_refresh_ms": 5000,
        "default_settings": True,
        "failover_s": [12.0, 20.0, 15.0],
        "failover_max_s": 20.0,
        "failover_median_s": 15.0,
        "delivered": 360,
        "lost": 0,
        "doubled": 0,
    },
}


def met(results: dict[str, Any]) -> dict[str, bool | None]:
    return {row.measurement.split(",")[0].split(" (")[0]: row.met for row in rows(results)}


def changed(path: str, value: Any) -> dict[str, Any]:
    results = copy.deepcopy(RESULTS)
    *parents, leaf = path.split(".")
    node = results
    for name in parents:
        node = node[name]
    node[leaf] = value
    return results


def test_every_target_met_on_good_figures() -> None:
    judged = {row.measurement: row.met for row in rows(RESULTS) if row.met is not None}
    assert len(judged) == 8
    assert judged.pop("going further: backlog drain faster than bare") is False
    assert all(judged.values())


@pytest.mark.parametrize(
    ("path", "value", "measurement"),
    [
        ("latency.service.p99_ms", 590.1, "push latency"),
        ("fanout.service.p99_ms", 660.1, "fan-out latency"),
        ("fanout.rss_kib_per_folder", 256.0, "RSS per IDLE folder at 1000"),
        ("fanout.large.start_to_all_idle_s", 32.1, "start until all 1000 folders in IDLE"),
        ("drain.service_per_s", 559.0, "backlog drain"),
        ("failover.failover_max_s", 30.0, "failover after SIGKILL"),
        ("failover.default_settings", False, "failover after SIGKILL"),
        ("failover.doubled", 1, "events across the failovers: lost / doubled"),
    ],
    ids=["latency", "fanout", "rss", "startup", "drain", "failover", "not-defaults", "doubled"],
)
def test_a_figure_past_its_target_is_not_met(path: str, value: Any, measurement: str) -> None:
    assert met(RESULTS)[measurement] is True
    assert met(changed(path, value))[measurement] is False


def test_only_measurements_that_ran_give_rows() -> None:
    table = render_markdown(rows({"latency": RESULTS["latency"]}))
    lines = table.splitlines()
    assert lines[0] == "| measurement | service | baseline | target | met? |"
    assert len(lines) == 3
    assert lines[2].endswith("| yes |")


def test_a_missed_target_is_marked_in_the_table() -> None:
    table = render_markdown(rows(changed("drain.service_per_s", 100.0)))
    assert "| **no** |" in table


def test_quick_sizes_and_subset_from_the_command_line() -> None:
    args = build_parser().parse_args(["--quick", "--only", "drain,latency", "--backlog", "300"])
    assert args.only == ["drain", "latency"]
    assert sizes(args) == {**QUICK, "backlog": 300}


def test_unknown_measurement_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--only", "latency,speed"])


def test_commands_and_the_bare_exists_time_are_reported() -> None:
    results = {
        "latency": {**RESULTS["latency"], "server": "cyrus"},
        "commands": {
            "server": "cyrus",
            "service": {"uid_search": {"n": 50, "p50_ms": 44.9, "p99_ms": 48.0, "max_ms": 49.0}},
            "baseline": {"uid_search": {"n": 50, "p50_ms": 0.4, "p99_ms": 0.9, "max_ms": 1.0}},
        },
    }
    results["latency"]["bare_exists"] = {"n": 200, "p50_ms": 0.8, "p99_ms": 1.5, "max_ms": 2.0}
    table = {row.measurement: row for row in rows(results)}
    latency = table["push latency, 1 folder on cyrus p50 / p99 / max (ms, n=200)"]
    assert "EXISTS alone 0.8 / 1.5" in latency.baseline
    search = table["catch-up command uid_search on cyrus p50 / p99 (ms, n=50)"]
    assert search.met is False and "TCP_NODELAY" in search.baseline
