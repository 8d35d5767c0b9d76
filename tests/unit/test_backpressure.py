"""Pause and resume with hysteresis (backpressure: pure decisions)."""

from __future__ import annotations

import pytest

from email_service.publish.backpressure import (
    BACKLOG,
    MEMORY,
    Pressure,
    WaterMarks,
    backlog_of,
    decide_pause,
)

MARKS = WaterMarks(high_entries=100, low_entries=50, high_bytes=1000, low_bytes=600)

CASES = [
    ("calm", False, 10, 100, 0, None),
    ("backlog above high pauses", False, 101, 100, 0, BACKLOG),
    ("backlog at high still publishes", False, 100, 100, 0, None),
    ("memory above high pauses", False, 0, 1001, 0, MEMORY),
    ("the batch would cross the high mark", False, 0, 900, 100, MEMORY),
    ("paused, between the marks: stays paused", True, 70, 100, 0, BACKLOG),
    ("paused, memory between the marks", True, 0, 700, 0, MEMORY),
    ("paused, both below low: resumes", True, 50, 500, 0, None),
    ("paused, the batch would cross low", True, 0, 500, 100, MEMORY),
]


@pytest.mark.parametrize(
    ("paused", "backlog", "memory", "incoming", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide_pause(
    paused: bool, backlog: int, memory: int, incoming: int, reason: str | None
) -> None:
    decision = decide_pause(paused, Pressure(backlog, memory), incoming, MARKS)
    assert (decision.reason if decision else None) == reason


@pytest.mark.parametrize(
    ("groups", "length", "backlog"),
    [
        ([], 500, 0),
        ([{"lag": 3, "pending": 2}], 500, 5),
        ([{"lag": None, "pending": 1}], 500, 501),
        ([{"lag": 3, "pending": 0}, {"lag": 40, "pending": 10}], 500, 50),
    ],
    ids=["no group", "lag and pending", "lag unknown", "busiest group"],
)
def test_backlog_of(groups: list[dict[str, int | None]], length: int, backlog: int) -> None:
    assert backlog_of(groups, length) == backlog
