from datetime import UTC, datetime

import pytest

from email_service.model import ImapEndpoint, ProviderConfig, Security
from email_service.sync.budget import ConnectionPlan
from email_service.worker.supervision import POLLER, plan_listeners, plan_specs, stagger_delay_s

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)


def provider(
    pid: str,
    folders: tuple[str, ...] = ("INBOX",),
    *,
    active: bool = True,
    paused: bool = False,
    version: datetime = T0,
) -> ProviderConfig:
    return ProviderConfig(
        id=pid,
        tenant="t",
        provider_type="imap",
        name=pid,
        mailbox=f"{pid}@x",
        is_active=active,
        status="connected",
        endpoint=ImapEndpoint("h", 993, Security.TLS),
        auth_type="password",
        username="u",
        folders=folders,
        lease_fence=0,
        updated_at=version,
        is_paused=paused,
    )


def idle_plan(*folders: str) -> ConnectionPlan:
    return ConnectionPlan(idle_folders=folders, polled_folders=())


@pytest.mark.parametrize(
    ("providers", "held", "plans", "expected"),
    [
        (
            [provider("a", ("INBOX", "S"))],
            {("t", "a"): 3},
            {"a": idle_plan("INBOX", "S")},
            [("t", "a", "INBOX"), ("t", "a", "S")],
        ),
        ([provider("a")], {}, {"a": idle_plan("INBOX")}, []),
        ([provider("a", paused=True)], {("t", "a"): 1}, {"a": idle_plan("INBOX")}, []),
        ([provider("a", active=False)], {("t", "a"): 1}, {"a": idle_plan("INBOX")}, []),
        (
            [provider("a", ("INBOX", "S", "T"))],
            {("t", "a"): 1},
            {"a": ConnectionPlan(("INBOX",), ("S", "T"))},
            [("t", "a", POLLER), ("t", "a", "INBOX")],
        ),
    ],
    ids=["held-provider", "not-held", "paused", "inactive", "budget-poller"],
)
def test_plan_specs(providers, held, plans, expected) -> None:  # type: ignore[no-untyped-def]
    assert sorted(plan_specs(providers, held, plans)) == expected


def versions(specs):  # type: ignore[no-untyped-def]
    return {lid: spec.version for lid, spec in specs.items()}


def test_plan_listeners_restarts_on_config_fence_or_folder_change() -> None:
    base = plan_specs([provider("a")], {("t", "a"): 1}, {"a": idle_plan("INBOX")})
    running = versions(base)
    assert plan_listeners(running, base).start == [] and plan_listeners(running, base).stop == []
    changed = [
        plan_specs([provider("a", version=T1)], {("t", "a"): 1}, {"a": idle_plan("INBOX")}),
        plan_specs([provider("a")], {("t", "a"): 2}, {"a": idle_plan("INBOX")}),
    ]
    for wanted in changed:
        changes = plan_listeners(running, wanted)
        assert changes.stop == [("t", "a", "INBOX")]
        assert [s.listener_id for s in changes.start] == [("t", "a", "INBOX")]
    gone = plan_listeners(running, {})
    assert gone.stop == [("t", "a", "INBOX")] and gone.start == []


@pytest.mark.parametrize(
    ("index", "count", "window_s", "unit", "expected"),
    [
        (0, 1, 2.0, 0.5, 0.0),
        (0, 4, 2.0, 0.0, 0.0),
        (3, 4, 2.0, 0.999, 1.9995),
        (1, 2, 0.0, 0.5, 0.0),
    ],
    ids=["single", "first-slot", "last-slot-stays-in-window", "no-window"],
)
def test_stagger(index: int, count: int, window_s: float, unit: float, expected: float) -> None:
    assert stagger_delay_s(index, count, window_s, unit) == pytest.approx(expected)
