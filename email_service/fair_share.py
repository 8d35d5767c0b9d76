"""How many provider leases a worker should hold, take or give back (core).

Each live worker aims at ``ceil(active providers / live workers)``. It takes free leases up
to that target, and gives back down to the target only when it holds more than the target
plus a slack, so small changes in the counts do not make leases flap between workers. When
a worker joins, the others find themselves above target + slack at their next refresh and
hand back their surplus, which the newcomer takes: rebalancing needs no restart.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: Slack above the target before surplus is handed back: 10 % of the target, at least 1.
SLACK_FRACTION = 0.1


@dataclass(frozen=True)
class ShareDecision:
    target: int
    take: int
    release: int


def plan_share(*, active_total: int, live_workers: int, held: int) -> ShareDecision:
    """What to do so this worker holds its share of ``active_total`` leases."""
    target = math.ceil(active_total / max(live_workers, 1))
    slack = max(1, math.ceil(target * SLACK_FRACTION))
    if held > target + slack:
        return ShareDecision(target=target, take=0, release=held - target)
    if held < target:
        return ShareDecision(target=target, take=target - held, release=0)
    return ShareDecision(target=target, take=0, release=0)


def pick_to_take(free: Sequence[T], rng: random.Random) -> list[T]:
    """Free leases in random order, so workers taking at once rarely try the same one."""
    return rng.sample(list(free), len(free))


def pick_to_release(held: Sequence[T], count: int) -> list[T]:
    """The leases to give back: the last ``count`` in sorted order (stable across ticks)."""
    return sorted(held)[-count:] if count > 0 else []  # type: ignore[type-var]


def lease_must_be_dropped(
    *, since_last_renewal_s: float, lease_ttl_s: float, safety_fraction: float = 0.25
) -> bool:
    """Whether renewals failed for so long that listeners must stop before the lease ends.

    ``since_last_renewal_s`` is measured from when the last successful renewal was *sent*,
    which is no later than the database's clock reading for it, so stopping at
    ``(1 - safety_fraction) * ttl`` stops before the lease can have expired.
    """
    return since_last_renewal_s >= (1 - safety_fraction) * lease_ttl_s
