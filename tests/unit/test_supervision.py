from datetime import UTC, datetime

import pytest

from email_service.model import ImapEndpoint, ProviderConfig, Security
from email_service.supervision import plan_listeners, stagger_delay_s

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)


def provider(
    pid: str, folders: tuple[str, ...] = ("INBOX",), *, active: bool = True, version: datetime = T0
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
    )


@pytest.mark.parametrize(
    ("running", "providers", "start", "stop"),
    [
        ({}, [provider("a", ("INBOX", "Support"))], [("a", "INBOX"), ("a", "Support")], []),
        ({("t", "a", "INBOX"): T0}, [provider("a")], [], []),
        ({("t", "a", "INBOX"): T0}, [], [], [("t", "a", "INBOX")]),
        ({("t", "a", "INBOX"): T0}, [provider("a", active=False)], [], [("t", "a", "INBOX")]),
        (
            {("t", "a", "INBOX"): T0},
            [provider("a", version=T1)],
            [("a", "INBOX")],
            [("t", "a", "INBOX")],
        ),
        (
            {("t", "a", "INBOX"): T0, ("t", "a", "Old"): T0},
            [provider("a", ("INBOX", "New"))],
            [("a", "New")],
            [("t", "a", "Old")],
        ),
    ],
    ids=[
        "new-provider",
        "unchanged",
        "removed",
        "deactivated",
        "config-changed",
        "folders-changed",
    ],
)
def test_plan_listeners(running, providers, start, stop) -> None:  # type: ignore[no-untyped-def]
    changes = plan_listeners(running, providers)
    assert [(p.id, folder) for p, folder in changes.start] == start
    assert changes.stop == stop


@pytest.mark.parametrize(
    ("index", "count", "window_ms", "unit", "expected"),
    [
        (0, 1, 2000, 0.5, 0.0),
        (0, 4, 2000, 0.0, 0.0),
        (3, 4, 2000, 0.999, 1.9995),
        (1, 2, 0, 0.5, 0.0),
    ],
    ids=["single", "first-slot", "last-slot-stays-in-window", "no-window"],
)
def test_stagger(index: int, count: int, window_ms: int, unit: float, expected: float) -> None:
    assert stagger_delay_s(index, count, window_ms, unit) == pytest.approx(expected)
