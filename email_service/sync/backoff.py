"""Reconnect delays that cannot storm (core: randomness is passed in).

Capped exponential backoff with jitter: the n-th consecutive failure waits
``min(max, base * 2**(n-1))``, spread by ``±jitter_pct`` so listeners that failed together
do not come back together. A server's own hint (``[THROTTLED]``, "Suggested Backoff Time")
is a floor. The count of failures resets only after a connection has stayed up for
``stable_s``: a login that is dropped at once keeps backing off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Office 365: "... Suggested Backoff Time: 192 milliseconds" (also seen with seconds).
_SUGGESTED_BACKOFF = re.compile(
    r"suggested\s+backoff\s+time\s*:?\s*(\d+(?:\.\d+)?)\s*(milliseconds?|ms|seconds?|s)\b",
    re.IGNORECASE,
)
#: Words in a server reply that mean "slow down", not "wrong password" or "broken".
THROTTLE_MARKERS = (
    "[THROTTLED]",
    "[UNAVAILABLE]",
    "[LIMIT]",
    "TOO MANY SIMULTANEOUS CONNECTIONS",
    "TOO MANY CONNECTIONS",
    "SUGGESTED BACKOFF",
)


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


def failures_after_disconnect(
    policy: BackoffPolicy, failures: int, connected_for_s: float | None
) -> int:
    """The failure count after a connection ended in error.

    ``connected_for_s`` is how long the session was up, or None when it never came up
    (refused, or dropped before login finished): that never resets the count, whatever the
    stable period is set to.
    """
    if connected_for_s is not None and connected_for_s >= policy.stable_s:
        return 1
    return failures + 1


def classify_throttle(message: str) -> tuple[bool, float | None]:
    """Whether a server reply asks us to back off, and the delay it suggests (seconds)."""
    upper = message.upper()
    if not any(marker in upper for marker in THROTTLE_MARKERS):
        return False, None
    match = _SUGGESTED_BACKOFF.search(message)
    if match is None:
        return True, None
    amount = float(match.group(1))
    return True, amount / 1000 if match.group(2).lower().startswith("m") else amount
