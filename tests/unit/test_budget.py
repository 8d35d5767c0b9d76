from datetime import UTC, datetime

import pytest

from email_service.model import FolderCursor, ImapEndpoint, ProviderConfig, Security
from email_service.sync.budget import (
    ConnectionPlan,
    PollStep,
    connections_to_record,
    plan_connections,
    plan_poll_step,
    plan_tenant_share,
    rank_folders,
    should_catch_up,
)

WHEN = datetime(2024, 1, 1, tzinfo=UTC)


def provider(
    provider_id: str, *folders: str, tenant: str = "t1", max_connections: int | None = None
) -> ProviderConfig:
    return ProviderConfig(
        id=provider_id,
        tenant=tenant,
        provider_type="imap",
        name="Support",
        mailbox="support@example.com",
        is_active=True,
        status="connected",
        endpoint=ImapEndpoint("imap.example.com", 993, Security.TLS),
        auth_type="password",
        username="support",
        folders=folders,
        lease_fence=1,
        updated_at=WHEN,
        max_connections=max_connections,
    )


def plan(idle: str, polled: str = "", shared: int | None = None) -> ConnectionPlan:
    """``plan("INBOX A", "B C")``: folder names separated by spaces; ``shared``: visiting."""
    return ConnectionPlan(
        tuple(idle.split()), tuple(polled.split()), shared is not None, shared or 0
    )


def folders(count: int) -> tuple[str, ...]:
    return ("INBOX", *(f"F{n}" for n in range(1, count)))


@pytest.mark.parametrize(
    ("providers", "cap", "expected"),
    [
        ([provider("a", "INBOX", "Sales", "Billing")], 50, {"a": plan("INBOX Sales Billing")}),
        ([provider("a", *folders(5))], 50, {"a": plan("INBOX F1 F2 F3 F4")}),
        ([provider("a", *folders(7))], 50, {"a": plan("INBOX F1 F2 F3", "F4 F5 F6")}),
        (
            [provider("a", "Sales", "inbox", "Billing", max_connections=2)],
            50,
            {"a": plan("inbox", "Sales Billing")},
        ),
        ([provider("a", "INBOX", "Sales", max_connections=1)], 50, {"a": plan("", "INBOX Sales")}),
        ([provider("a", "Sales", max_connections=1)], 50, {"a": plan("Sales")}),
        ([provider("a", *folders(12), max_connections=15)], 50, {"a": plan(" ".join(folders(12)))}),
        (
            [provider("a", "INBOX", "Sales", "Billing", max_connections=2)],
            50,
            {"a": plan("INBOX", "Sales Billing")},
        ),
        ([provider("a", *folders(3), max_connections=0)], 50, {"a": plan("INBOX F1 F2")}),
        (
            [provider("a", "INBOX", "Sales", "INBOX", max_connections=2)],
            50,
            {"a": plan("INBOX Sales")},
        ),
        ([provider("a")], 50, {"a": plan("")}),
        (
            [provider("c", *folders(2)), provider("a", *folders(6)), provider("b", *folders(3))],
            6,
            {
                "a": plan("INBOX", "F1 F2 F3 F4 F5"),
                "b": plan("INBOX", "F1 F2"),
                "c": plan("INBOX F1"),
            },
        ),
        (
            [provider("a", *folders(3)), provider("b", *folders(3))],
            6,
            {"a": plan("INBOX F1 F2"), "b": plan("INBOX F1 F2")},
        ),
        (
            [provider("a", *folders(3)), provider("b", *folders(3))],
            5,
            {"a": plan("INBOX", "F1 F2"), "b": plan("INBOX F1 F2")},
        ),
        (
            [provider("a", *folders(2)), provider("b", *folders(3)), provider("c", "INBOX")],
            2,
            {
                "a": plan("", "INBOX F1"),
                "b": plan("", "INBOX F1 F2", shared=1),
                "c": plan("", "INBOX", shared=1),
            },
        ),
        (
            [provider(f"p{n:02d}", "INBOX") for n in range(25)],
            20,
            {
                **{f"p{n:02d}": plan("INBOX") for n in range(18)},
                **{f"p{n:02d}": plan("", "INBOX", shared=2) for n in range(18, 25)},
            },
        ),
        (
            [provider("a", "INBOX"), provider("b", "INBOX")],
            1,
            {"a": plan("", "INBOX", shared=1), "b": plan("", "INBOX", shared=1)},
        ),
        (
            [
                provider("a", *folders(4), tenant="t1"),
                provider("b", *folders(4), tenant="t1"),
                provider("c", *folders(4), tenant="t2"),
            ],
            6,
            {
                "a": plan("INBOX F1", "F2 F3"),
                "b": plan("INBOX F1", "F2 F3"),
                "c": plan("INBOX F1 F2 F3"),
            },
        ),
    ],
    ids=[
        "fits",
        "exactly-at-budget",
        "over-budget-rest-on-one-poller",
        "inbox-first-case-insensitive",
        "budget-1-means-one-poller",
        "budget-1-single-folder-stays-idle",
        "per-provider-override-gmail-15",
        "per-provider-override-smaller",
        "zero-override-means-default",
        "duplicate-folder-counts-once",
        "no-folders-no-connections",
        "tenant-cap-demotes-largest-first-across-3",
        "tenant-cap-exactly-met",
        "tenant-cap-ties-go-to-lowest-id",
        "cap-below-provider-count-the-rest-take-turns",
        "a-tenth-of-the-cap-is-shared",
        "cap-1-everyone-takes-turns",
        "tenants-are-capped-independently",
    ],
)
def test_plan_connections(
    providers: list[ProviderConfig], cap: int, expected: dict[str, ConnectionPlan]
) -> None:
    plans = plan_connections(providers, per_account_default=5, per_tenant_cap=cap)
    assert plans == expected
    held = connections_to_record(providers, plans)
    for tenant in {p.tenant for p in providers}:  # the tenant's rows never add up past its cap
        assert sum(held[p.id] for p in providers if p.tenant == tenant) <= cap
    for config in providers:  # whatever the limits, every folder is followed exactly once
        chosen = plans[config.id]
        assert sorted(chosen.idle_folders + chosen.polled_folders) == sorted(
            rank_folders(config.folders)
        )


def test_recorded_connections_spread_the_shared_ones_over_the_first_visitors() -> None:
    providers = [provider(name, "INBOX") for name in "abcde"]
    plans = plan_connections(providers, per_account_default=5, per_tenant_cap=3)
    assert connections_to_record(providers, plans) == {"a": 1, "b": 1, "c": 1, "d": 0, "e": 0}
    assert [plans[p].visiting for p in "abcde"] == [False, False, True, True, True]


def test_a_share_of_zero_makes_every_provider_wait_for_a_slot() -> None:
    providers = [provider("a", "INBOX"), provider("b", *folders(3))]
    plans = plan_connections(
        providers, per_account_default=5, per_tenant_cap=50, tenant_caps={"t1": 0}
    )
    assert plans == {"a": plan("", "INBOX", shared=0), "b": plan("", "INBOX F1 F2", shared=0)}
    assert connections_to_record(providers, plans) == {"a": 0, "b": 0}


def test_a_tenant_cap_of_its_own_overrides_the_setting() -> None:
    providers = [provider("a", *folders(4)), provider("b", *folders(4), tenant="t2")]
    plans = plan_connections(
        providers, per_account_default=5, per_tenant_cap=50, tenant_caps={"t1": 2}
    )
    assert plans == {"a": plan("INBOX", "F1 F2 F3"), "b": plan("INBOX F1 F2 F3")}


@pytest.mark.parametrize(
    ("demands", "cap", "elsewhere", "expected"),
    [
        ({"w1": 60, "w2": 60}, 50, 0, 25),
        ({"w1": 60, "w2": 60}, 50, 40, 10),
        ({"w1": 10, "w2": 200}, 50, 0, 10),
        ({"w1": 200, "w2": 10}, 50, 10, 40),
        ({"w1": 3, "w2": 3, "w3": 3}, 4, 0, 2),
        ({"w1": 3, "w2": 3, "w3": 3}, 2, 2, 1),
        ({"w1": 1, "w2": 9}, 50, 50, 0),
        ({"w1": 6, "w2": 6}, 5, 5, 0),
        ({"w2": 5}, 50, 0, 0),
    ],
    ids=[
        "even-split",
        "not-into-what-others-still-hold",
        "small-demand-gets-it-all",
        "big-demand-gets-the-rest",
        "remainder-to-lowest-id",
        "more-workers-than-the-cap-one-each",
        "none-while-others-hold-all",
        "waits-for-the-other-to-shrink",
        "no-demand-no-share",
    ],
)
def test_a_workers_share_of_the_tenant_cap(
    demands: dict[str, int], cap: int, elsewhere: int, expected: int
) -> None:
    assert plan_tenant_share(cap, demands, "w1", held_elsewhere=elsewhere) == expected


def test_the_shares_of_all_workers_fit_the_cap() -> None:
    demands = {"w1": 7, "w2": 30, "w3": 30, "w4": 2}
    shares = [plan_tenant_share(50, demands, w, held_elsewhere=0) for w in demands]
    assert sum(shares) == 50 and shares[0] == 7 and shares[3] == 2


@pytest.mark.parametrize(
    ("chosen", "connections"),
    [
        (plan("INBOX A"), 2),
        (plan("INBOX", "A B"), 2),
        (plan("", "A B"), 1),
        (plan(""), 0),
        (plan("", "A B", shared=3), 0),
        (plan("", "A B", shared=0), 0),
    ],
    ids=[
        "all-idle",
        "idle-and-poller",
        "poller-only",
        "empty",
        "visiting-holds-none-of-its-own",
        "visiting-without-slots-yet",
    ],
)
def test_connections_of_a_plan(chosen: ConnectionPlan, connections: int) -> None:
    assert chosen.connections == connections


@pytest.mark.parametrize(
    ("previous", "count", "jitter", "unit", "expected"),
    [
        (None, 3, 0.0, 0.5, PollStep(0, 0.2)),
        (0, 3, 0.0, 0.5, PollStep(1, 0.2)),
        (2, 3, 0.0, 0.5, PollStep(0, 0.2)),
        (None, 1, 0.0, 0.5, PollStep(0, 0.6)),
        (0, 1, 0.0, 0.9, PollStep(0, 0.6)),
        (1, 3, 0.1, 0.0, PollStep(2, 0.18)),
        (1, 3, 0.1, 1.0, PollStep(2, 0.22)),
        (1, 3, 0.1, 0.5, PollStep(2, 0.2)),
        (5, 3, 0.0, 0.5, PollStep(0, 0.2)),
    ],
    ids=[
        "starts-at-first-folder",
        "next-folder",
        "wraps-around",
        "one-folder-waits-whole-interval",
        "one-folder-again",
        "jitter-low",
        "jitter-high",
        "jitter-middle-is-exact",
        "out-of-range-previous-wraps",
    ],
)
def test_plan_poll_step_spreads_the_interval_over_the_folders(
    previous: int | None, count: int, jitter: float, unit: float, expected: PollStep
) -> None:
    step = plan_poll_step(
        previous, folder_count=count, interval_s=0.6, jitter_pct=jitter, random_unit=unit
    )
    assert step.folder_index == expected.folder_index
    assert step.wait_s == pytest.approx(expected.wait_s)


def test_plan_poll_step_needs_a_folder() -> None:
    with pytest.raises(ValueError, match="at least one folder"):
        plan_poll_step(None, folder_count=0, interval_s=1.0, jitter_pct=0.1, random_unit=0.5)


@pytest.mark.parametrize(
    ("cursor", "seen_uid_next", "uid_validity", "uid_next", "expected"),
    [
        (FolderCursor(7, 10), 11, 7, 11, False),
        (FolderCursor(7, 10), 11, 7, 12, True),
        (FolderCursor(7, 10), 11, 8, 11, True),
        (FolderCursor(7, 10), 11, 7, None, True),
        (FolderCursor(7, 10), 14, 7, 14, False),
        (FolderCursor(7, 10), 14, 7, 15, True),
        (FolderCursor(7, 10), None, 7, 11, False),
        (FolderCursor(7, 10), None, 7, 12, True),
        (FolderCursor(7, 0), 1, 7, 1, False),
    ],
    ids=[
        "unchanged",
        "new-uid",
        "uidvalidity-changed",
        "no-uidnext-always-looks",
        "newest-expunged-not-looked-at-again",
        "new-uid-after-expunged-ones",
        "no-examine-uidnext-falls-back-to-cursor",
        "no-examine-uidnext-new-uid",
        "empty-folder",
    ],
)
def test_should_catch_up(
    cursor: FolderCursor,
    seen_uid_next: int | None,
    uid_validity: int,
    uid_next: int | None,
    expected: bool,
) -> None:
    assert (
        should_catch_up(
            cursor, seen_uid_next=seen_uid_next, uid_validity=uid_validity, uid_next=uid_next
        )
        is expected
    )
