import random

import pytest

from email_service.fair_share import (
    ShareDecision,
    lease_must_be_dropped,
    pick_to_release,
    pick_to_take,
    plan_share,
)


@pytest.mark.parametrize(
    ("active", "workers", "held", "expected"),
    [
        (60, 3, 0, ShareDecision(20, 20, 0)),
        (60, 3, 20, ShareDecision(20, 0, 0)),
        (60, 3, 22, ShareDecision(20, 0, 0)),
        (60, 3, 23, ShareDecision(20, 0, 3)),
        (60, 4, 20, ShareDecision(15, 0, 5)),
        (60, 4, 16, ShareDecision(15, 0, 0)),
        (61, 3, 20, ShareDecision(21, 1, 0)),
        (5, 10, 0, ShareDecision(1, 1, 0)),
        (5, 10, 2, ShareDecision(1, 0, 0)),
        (0, 3, 0, ShareDecision(0, 0, 0)),
        (0, 3, 4, ShareDecision(0, 0, 4)),
        (60, 0, 0, ShareDecision(60, 60, 0)),
        (60, 2, 60, ShareDecision(30, 0, 30)),
    ],
    ids=[
        "start-empty",
        "at-target",
        "within-slack",
        "above-slack",
        "fourth-worker-joins",
        "fourth-joins-within-slack",
        "uneven-rounds-up",
        "more-workers-than-providers",
        "tiny-within-slack",
        "nothing-active",
        "all-removed",
        "no-live-count-yet",
        "sole-worker-sheds-half",
    ],
)
def test_plan_share(active: int, workers: int, held: int, expected: ShareDecision) -> None:
    assert plan_share(active_total=active, live_workers=workers, held=held) == expected


def test_pick_to_take_is_a_permutation() -> None:
    items = list(range(20))
    picked = pick_to_take(items, random.Random(4))
    assert sorted(picked) == items and picked != items


@pytest.mark.parametrize(
    ("count", "expected"), [(0, []), (2, [("t", "c"), ("t", "d")])], ids=["none", "last-two"]
)
def test_pick_to_release(count: int, expected: list[tuple[str, str]]) -> None:
    held = [("t", "d"), ("t", "a"), ("t", "c"), ("t", "b")]
    assert pick_to_release(held, count) == expected


@pytest.mark.parametrize(
    ("since_s", "ttl_s", "expected"),
    [(0.0, 30.0, False), (20.0, 30.0, False), (22.5, 30.0, True), (40.0, 30.0, True)],
    ids=["just-renewed", "two-renewals-missed", "at-safety-margin", "past-expiry"],
)
def test_lease_must_be_dropped(since_s: float, ttl_s: float, expected: bool) -> None:
    assert lease_must_be_dropped(since_last_renewal_s=since_s, lease_ttl_s=ttl_s) is expected
