"""Reconnect delays that cannot storm (core: randomness is passed in).

Capped exponential backoff with jitter: the n-th consecutive failure waits
``min(max, base * 2**(n-1))``, spread by ``±jitter_pct`` so listeners that failed together
do not come back together. A server's own hint (``[THROTTLED]``, "Suggested Backoff Time")
is a floor. The count of failures resets only after a connection has stayed up for
``stable_s``: a login that is dropped at once keeps backing off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: float
    max_s: float
    jitter_pct: float
    stable_s: float


def next_delay_s(
    policy: BackoffPolicy, failures: int, *, random_unit: float, hint_s: float | None = None
) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (``random_unit`` in [0, 1))."""
    exponent = max(failures - 1, 0)
    raw = policy.base_s * float(2 ** min(exponent, 62))
    capped = min(policy.max_s, raw)
    spread = 1.0 + policy.jitter_pct * (2.0 * random_unit - 1.0)
    delay = min(policy.max_s, capped * spread)
    if hint_s is not None:
        delay = max(delay, hint_s)
    return max(delay, 0.0)


def failures_after_disconnect(policy: BackoffPolicy, failures: int, connected_for_s: float) -> int:
    """The failure count after a connection that lasted ``connected_for_s`` ended in error."""
    if connected_for_s >= policy.stable_s:
        return 1
    return failures + 1
