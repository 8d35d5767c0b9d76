"""How many provider leases a worker should hold, take or give back (core).

With ``n`` live workers and ``p`` active providers, every worker should end up with
``floor(p / n)`` (*low*) or ``ceil(p / n)`` (*high*, the target) leases. Each refresh, a
worker sees every lease's owner and decides:

- above target + slack (10 %, at least 1): give back down to the target (a worker joined,
  providers were removed);
- below target: take free leases, up to the target; but only up to *low* while another
  worker is below *low*, so a lease handed over for a starved worker is not taken back;
- above *low* while other workers are below it and the free leases do not cover what they
  lack: the largest holder (ties: the last worker id) gives back one lease at a time until
  they are covered. Without this, three providers over two workers could settle at 3/0:
  the holder of three is within target 2 + slack 1, and the other finds nothing free.

Every release is for a worker that is short of *low*, and nobody takes past *low* while one
is, so counts move towards ``low``/``high`` and then stay: no flapping. A joining worker
takes over its share at the others' next refresh: rebalancing needs no restart.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
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


def plan_share(
    *, active_total: int, live_workers: int, holdings: Mapping[str, int], me: str, free: int
) -> ShareDecision:
    """What worker ``me`` should do so that every live worker holds its share.

    ``holdings`` counts the live (unexpired) leases per owner, ``me`` included; live workers
    that hold none are absent from it. ``free`` is how many leases nobody holds. ``take`` is
    how many of the free leases to take, ``release`` how many of ``me``'s to give back.
    """
    workers = max(live_workers, 1)
    low, target = active_total // workers, math.ceil(active_total / workers)
    slack = max(1, math.ceil(target * SLACK_FRACTION))
    held = holdings.get(me, 0)
    others = [count for owner, count in holdings.items() if owner != me and count > 0]
    empty_workers = max(0, workers - 1 - len(others))
    short = sum(max(0, low - count) for count in others) + empty_workers * low
    if held > target + slack:
        return ShareDecision(target=target, take=0, release=held - target)
    if held < target:
        wanted = (target if short == 0 else low) - held
        return ShareDecision(target=target, take=max(0, min(wanted, free)), release=0)
    if held > low and short > free and _is_largest(holdings, me):
        return ShareDecision(target=target, take=0, release=min(held - low, short - free))
    return ShareDecision(target=target, take=0, release=0)


def _is_largest(holdings: Mapping[str, int], me: str) -> bool:
    """Whether ``me`` holds the most leases (ties: the last id), so one worker gives back."""
    return max(holdings.items(), key=lambda item: (item[1], item[0]))[0] == me


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
