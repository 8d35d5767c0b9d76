"""Per-tenant token buckets for the API calls that open IMAP connections (core: time passed in).

A bucket holds up to ``capacity`` tokens and refills at ``refill_per_s``; a call takes one
token or is refused with the seconds until the next one. The limiter keeps one bucket per
key (the tenant) in this process, so with N API replicas a tenant gets up to N times the
rate; that bounds how hard one tenant can make us hammer a mail server, which is the point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Buckets kept before full (idle) ones are forgotten; a full bucket carries no state.
MAX_BUCKETS = 10_000


@dataclass
class TokenBucket:
    tokens: float
    updated_s: float


def refill(bucket: TokenBucket, now_s: float, *, capacity: float, refill_per_s: float) -> None:
    """Add the tokens earned since the last update (never above ``capacity``)."""
    elapsed = max(now_s - bucket.updated_s, 0.0)
    bucket.tokens = min(capacity, bucket.tokens + elapsed * refill_per_s)
    bucket.updated_s = max(now_s, bucket.updated_s)


class RateLimiter:
    """Token buckets by key. Not thread-safe: used from the event loop only."""

    def __init__(self, *, capacity: int, per_minute: int, max_buckets: int = MAX_BUCKETS) -> None:
        self.capacity = float(capacity)
        self.refill_per_s = per_minute / 60.0
        self.max_buckets = max_buckets
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def tracked_keys(self) -> set[str]:
        """Keys with a bucket in memory (full buckets may be forgotten)."""
        return set(self._buckets)

    def try_acquire(self, key: str, now_s: float) -> float | None:
        """Take a token for ``key``: None when allowed, else seconds to wait before retrying."""
        bucket = self._buckets.get(key)
        if bucket is None:
            self._forget_full_buckets(now_s)
            bucket = self._buckets[key] = TokenBucket(self.capacity, now_s)
        refill(bucket, now_s, capacity=self.capacity, refill_per_s=self.refill_per_s)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.refill_per_s

    def _forget_full_buckets(self, now_s: float) -> None:
        if len(self._buckets) < self.max_buckets:
            return
        for key, bucket in list(self._buckets.items()):
            refill(bucket, now_s, capacity=self.capacity, refill_per_s=self.refill_per_s)
            if bucket.tokens >= self.capacity:
                del self._buckets[key]


def retry_after_header(wait_s: float) -> str:
    """``Retry-After`` in whole seconds, rounded up so a client that waits is let in."""
    return str(max(math.ceil(wait_s), 1))
