"""Whether workers may publish more, from the consumers' backlog and Redis memory (core).

With content inline a consumer group that stops reading fills Redis fast. Before a batch is
published, the worker compares the stream's backlog (for the busiest consumer group: entries
not yet delivered, ``XINFO GROUPS`` ``lag``, plus entries delivered but not acknowledged,
``pending``) and Redis ``used_memory`` with high and low water marks:

- publishing, and the backlog above ``EMAIL_SERVICE_BACKLOG_HIGH_ENTRIES`` or memory plus the
  batch about to be written above ``EMAIL_SERVICE_REDIS_MEMORY_HIGH_BYTES``: pause;
- paused, until the backlog is at most ``..._BACKLOG_LOW_ENTRIES`` and memory at most
  ``..._REDIS_MEMORY_LOW_BYTES``: stay paused (hysteresis: no flapping at one mark).

A paused folder keeps its built batch and its cursor: nothing is lost or trimmed, and
publishing resumes by itself once the consumers have caught up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Redis holds a stream entry in more than its field bytes (listpack, radix tree, per-entry
#: ids); measured about 1.1 for entries of kilobytes and more (bench ``inline``), so a batch
#: is counted at this factor against the memory mark.
MEMORY_PER_ENTRY_BYTE = 1.25

BACKLOG = "backlog"
MEMORY = "memory"


@dataclass(frozen=True)
class WaterMarks:
    high_entries: int
    low_entries: int
    high_bytes: int
    low_bytes: int


@dataclass(frozen=True)
class Pressure:
    """What Redis said: the busiest group's backlog and ``used_memory``."""

    backlog: int
    used_memory: int


@dataclass(frozen=True)
class Pause:
    """Hold publishing: ``reason`` is ``backlog`` or ``memory``, ``detail`` says by how much."""

    reason: str
    detail: str


def decide_pause(
    paused: bool, pressure: Pressure, incoming_bytes: int, marks: WaterMarks
) -> Pause | None:
    """A ``Pause`` while publishing must wait, None when the batch may go."""
    incoming = int(incoming_bytes * MEMORY_PER_ENTRY_BYTE)
    if paused:
        if pressure.backlog > marks.low_entries:
            return _backlog(pressure, marks.low_entries, "low")
        if pressure.used_memory + incoming > marks.low_bytes:
            return _memory(pressure, incoming, marks.low_bytes, "low")
        return None
    if pressure.backlog > marks.high_entries:
        return _backlog(pressure, marks.high_entries, "high")
    if pressure.used_memory + incoming > marks.high_bytes:
        return _memory(pressure, incoming, marks.high_bytes, "high")
    return None


def _backlog(pressure: Pressure, mark: int, which: str) -> Pause:
    return Pause(BACKLOG, f"consumer backlog {pressure.backlog} entries, {which} water mark {mark}")


def _memory(pressure: Pressure, incoming: int, mark: int, which: str) -> Pause:
    return Pause(
        MEMORY,
        f"Redis used_memory {pressure.used_memory} bytes (+{incoming} to publish), "
        f"{which} water mark {mark}",
    )


def backlog_of(groups: Sequence[Mapping[str, Any]], stream_length: int) -> int:
    """The busiest group's backlog from ``XINFO GROUPS`` rows: ``lag`` (undelivered; when
    Redis cannot tell it, null, the whole stream past the group counts: ``stream_length``)
    plus ``pending`` (delivered, not acknowledged). No group: no backlog."""
    worst = 0
    for group in groups:
        lag = group.get("lag")
        undelivered = stream_length if lag is None else int(lag)
        worst = max(worst, undelivered + int(group.get("pending") or 0))
    return worst
