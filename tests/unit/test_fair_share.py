import random

import pytest

from email_service.worker.fair_share import (
    ShareDecision,
    lease_must_be_dropped,
    pick_to_release,
    pick_to_take,
    plan_share,
)

ME = "worker-b"


def holdings(mine: int, *others: int) -> dict[str, int]:
    """Lease counts by owner: ``ME`` and then workers a, c, d, … (``ME`` sorts second)."""
    names = ["worker-a", "worker-c", "worker-d", "worker-e"]
    found = {name: count for name, count in zip(names, others, strict=False) if count}
    return {**found, ME: mine} if mine else found


@pytest.mark.parametrize(
    ("active", "workers", "held", "free", "expected"),
    [
        (60, 3, holdings(0), 60, ShareDecision(20, 20, 0)),
        (60, 3, holdings(20, 20, 20), 0, ShareDecision(20, 0, 0)),
        (62, 3, holdings(22, 20, 20), 0, ShareDecision(21, 0, 0)),
        (60, 3, holdings(22, 19, 19), 0, ShareDecision(20, 0, 2)),
        (60, 3, holdings(23, 20, 17), 0, ShareDecision(20, 0, 3)),
        (60, 4, holdings(20, 20, 20), 0, ShareDecision(15, 0, 5)),
        (60, 4, holdings(16, 16, 16, 12), 0, ShareDecision(15, 0, 0)),
        (61, 3, holdings(20, 20, 20), 1, ShareDecision(21, 1, 0)),
        (5, 10, holdings(0), 5, ShareDecision(1, 1, 0)),
        (5, 10, holdings(2, 1, 1, 1), 0, ShareDecision(1, 0, 0)),
        (0, 3, holdings(0), 0, ShareDecision(0, 0, 0)),
        (0, 3, holdings(4), 0, ShareDecision(0, 0, 4)),
        (60, 0, holdings(0), 60, ShareDecision(60, 60, 0)),
        (60, 2, holdings(60), 0, ShareDecision(30, 0, 30)),
        # Two replicas, three providers: the one holding all three hands one over.
        (3, 2, holdings(3), 0, ShareDecision(2, 0, 1)),
        (3, 2, holdings(0, 3), 0, ShareDecision(2, 0, 0)),
        (3, 2, holdings(0, 2), 1, ShareDecision(2, 1, 0)),
        (3, 2, holdings(2, 1), 0, ShareDecision(2, 0, 0)),
        (3, 2, holdings(1, 2), 0, ShareDecision(2, 0, 0)),
        # Just handed one back: it waits for the starved worker instead of taking it again.
        (3, 2, holdings(2), 1, ShareDecision(2, 0, 0)),
        # Four over three at 2/2/0: only the larger holder (ties: the last name) gives one.
        (4, 3, holdings(2, 2), 0, ShareDecision(2, 0, 1)),
        (4, 3, holdings(2, 0, 2), 0, ShareDecision(2, 0, 0)),
        (4, 3, holdings(2, 1, 1), 0, ShareDecision(2, 0, 0)),
        # A starved worker's need already covered by free leases: nobody hands any back.
        (4, 3, holdings(2, 1), 1, ShareDecision(2, 0, 0)),
    ],
    ids=[
        "start-empty",
        "at-target",
        "within-slack",
        "within-slack-but-others-short",
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
        "two-replicas-holder-of-all-gives-one",
        "two-replicas-starved-waits",
        "two-replicas-starved-takes",
        "two-replicas-settled-2-1",
        "two-replicas-settled-1-2",
        "just-released-does-not-retake",
        "four-over-three-last-name-gives",
        "four-over-three-other-holder-gives",
        "four-over-three-settled",
        "need-covered-by-free",
    ],
)
def test_plan_share(
    active: int, workers: int, held: dict[str, int], free: int, expected: ShareDecision
) -> None:
    decision = plan_share(
        active_total=active, live_workers=workers, holdings=held, me=ME, free=free
    )
    assert decision == expected


def settle(active: int, workers: int, rounds: int) -> list[list[int]]:
    """Every worker applies plan_share in turn (each sees the others' last counts)."""
    names = [f"worker-{n}" for n in range(workers)]
    held = dict.fromkeys(names, 0)
    history = []
    for _ in range(rounds):
        for name in names:
            free = active - sum(held.values())
            counts = {owner: count for owner, count in held.items() if count}
            decision = plan_share(
                active_total=active, live_workers=workers, holdings=counts, me=name, free=free
            )
            held[name] += min(decision.take, free) - decision.release
        history.append([held[name] for name in names])
    return history


@pytest.mark.parametrize(
    ("active", "workers"), [(3, 2), (4, 3), (5, 2), (60, 3), (61, 4), (7, 5), (2, 3)]
)
def test_every_worker_holds_some_and_the_counts_stop_moving(active: int, workers: int) -> None:
    history = settle(active, workers, rounds=10)
    final = history[-1]
    assert sum(final) == active
    assert max(final) - min(final) <= 1, history
    assert history[-3:] == [final] * 3, f"still moving: {history}"


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
