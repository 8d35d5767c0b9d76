"""Per-tenant token buckets with the time passed in."""

from __future__ import annotations

import pytest

from email_service.api.ratelimit import RateLimiter, retry_after_header


def test_a_burst_up_to_capacity_then_one_per_interval() -> None:
    limiter = RateLimiter(capacity=3, per_minute=6)  # one token every 10 s
    assert [limiter.try_acquire("a", 100.0) for _ in range(3)] == [None, None, None]
    assert limiter.try_acquire("a", 100.0) == pytest.approx(10.0)
    assert limiter.try_acquire("a", 104.0) == pytest.approx(6.0)
    assert limiter.try_acquire("a", 110.0) is None
    assert limiter.try_acquire("a", 110.0) == pytest.approx(10.0)


def test_tenants_have_separate_buckets() -> None:
    limiter = RateLimiter(capacity=1, per_minute=1)
    assert limiter.try_acquire("a", 0.0) is None
    assert limiter.try_acquire("a", 0.0) is not None
    assert limiter.try_acquire("b", 0.0) is None


def test_refill_never_exceeds_capacity_and_an_earlier_time_mints_nothing() -> None:
    limiter = RateLimiter(capacity=2, per_minute=60)
    assert limiter.try_acquire("a", 0.0) is None
    assert [limiter.try_acquire("a", 3600.0) for _ in range(3)] == [None, None, 1.0]
    assert limiter.try_acquire("a", 3000.0) is not None


def test_full_buckets_are_forgotten_when_there_are_too_many() -> None:
    limiter = RateLimiter(capacity=1, per_minute=60, max_buckets=3)
    for key in ("a", "b", "c"):
        limiter.try_acquire(key, 0.0)
    assert limiter.tracked_keys == {"a", "b", "c"}
    limiter.try_acquire("d", 0.5)  # none has refilled yet: all kept
    assert limiter.tracked_keys == {"a", "b", "c", "d"}
    limiter.try_acquire("e", 10.0)  # all have refilled: forgotten
    assert limiter.tracked_keys == {"e"}


@pytest.mark.parametrize(
    ("wait_s", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")], ids=str
)
def test_retry_after_rounds_up(wait_s: float, header: str) -> None:
    assert retry_after_header(wait_s) == header
