import pytest

from email_service.sync.backoff import BackoffPolicy, failures_after_disconnect, next_delay_s

POLICY = BackoffPolicy(base_s=1.0, max_s=300.0, jitter_pct=0.5, stable_s=120.0)


@pytest.mark.parametrize(
    ("failures", "random_unit", "hint_s", "expected"),
    [
        (1, 0.5, None, 1.0),
        (2, 0.5, None, 2.0),
        (5, 0.5, None, 16.0),
        (30, 0.5, None, 300.0),
        (1000, 0.5, None, 300.0),
        (3, 0.0, None, 2.0),
        (3, 1.0, None, 6.0),
        (30, 1.0, None, 300.0),
        (1, 0.5, 60.0, 60.0),
        (0, 0.5, None, 1.0),
    ],
    ids=[
        "first",
        "doubles",
        "fifth",
        "capped",
        "huge-count-capped",
        "jitter-low",
        "jitter-high",
        "jitter-never-above-cap",
        "server-hint-is-floor",
        "zero-failures",
    ],
)
def test_next_delay(
    failures: int, random_unit: float, hint_s: float | None, expected: float
) -> None:
    assert next_delay_s(POLICY, failures, random_unit=random_unit, hint_s=hint_s) == expected


@pytest.mark.parametrize(
    ("failures", "connected_for_s", "expected"),
    [(0, 0.0, 1), (4, 5.0, 5), (4, 119.9, 5), (9, 120.0, 1), (9, 3600.0, 1), (4, None, 5)],
    ids=[
        "first-failure",
        "dropped-after-login",
        "just-short-of-stable",
        "stable",
        "long-lived",
        "never-connected",
    ],
)
def test_failures_reset_only_after_stable_period(
    failures: int, connected_for_s: float | None, expected: int
) -> None:
    assert failures_after_disconnect(POLICY, failures, connected_for_s) == expected


def test_never_connected_never_resets_even_with_zero_stable_period() -> None:
    zero = BackoffPolicy(base_s=1.0, max_s=300.0, jitter_pct=0.5, stable_s=0.0)
    assert failures_after_disconnect(zero, 7, None) == 8
    assert failures_after_disconnect(zero, 7, 0.0) == 1


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("[AUTHENTICATIONFAILED] Authentication failed.", (False, None)),
        (
            "[THROTTLED] Request is throttled. Suggested Backoff Time: 192 milliseconds",
            (True, 0.192),
        ),
        ("[UNAVAILABLE] Suggested Backoff Time: 30 seconds", (True, 30.0)),
        ("Too many simultaneous connections. (Failure)", (True, None)),
        ("[LIMIT] too many connections from your address", (True, None)),
        ("OK", (False, None)),
    ],
    ids=["auth-failure", "o365-ms", "seconds", "gmail-too-many", "limit", "plain"],
)
def test_classify_throttle(message: str, expected: tuple[bool, float | None]) -> None:
    from email_service.sync.backoff import classify_throttle

    assert classify_throttle(message) == expected
