from datetime import UTC, datetime

import pytest

from email_service.budget import (
    ConnectionPlan,
    PollStep,
    plan_connections,
    plan_poll_step,
    rank_folders,
    should_catch_up,
)
from email_service.model import FolderCursor, ImapEndpoint, ProviderConfig, Security

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


def plan(idle: str, polled: str = "") -> ConnectionPlan:
    """``plan("INBOX A", "B C")``: folder names separated by spaces."""
    return ConnectionPlan(tuple(idle.split()), tuple(polled.split()))


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
            {"a": plan("", "INBOX F1"), "b": plan("", "INBOX F1 F2"), "c": plan("INBOX")},
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
        "cap-below-provider-count-one-connection-each",
        "tenants-are-capped-independently",
    ],
)
def test_plan_connections(
    providers: list[ProviderConfig], cap: int, expected: dict[str, ConnectionPlan]
) -> None:
    plans = plan_connections(providers, per_account_default=5, per_tenant_cap=cap)
    assert plans == expected
    for config in providers:  # whatever the limits, every folder is followed exactly once
        chosen = plans[config.id]
        assert sorted(chosen.idle_folders + chosen.polled_folders) == sorted(
            rank_folders(config.folders)
        )


@pytest.mark.parametrize(
    ("chosen", "connections"),
    [(plan("INBOX A"), 2), (plan("INBOX", "A B"), 2), (plan("", "A B"), 1), (plan(""), 0)],
    ids=["all-idle", "idle-and-poller", "poller-only", "empty"],
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
