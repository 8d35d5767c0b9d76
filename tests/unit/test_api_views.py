"""The API's response shapes: folder tree, folder modes, status, provider, test result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from email_service.api.imap_calls import missing_folders
from email_service.api.views import (
    FolderListing,
    LiveCheck,
    ServerFolderStatus,
    folder_modes,
    folders_view,
    provider_view,
    status_view,
)
from email_service.model import ImapEndpoint, ProviderConfig, Security
from email_service.store.providers import CursorRow, ProviderRecord, ProviderStatusRecord
from email_service.sync.budget import ConnectionPlan

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def provider(**changes: object) -> ProviderConfig:
    values: dict[str, object] = {
        "id": "p1",
        "tenant": "acme",
        "provider_type": "imap",
        "name": "Support",
        "mailbox": "support@example.com",
        "is_active": True,
        "status": "connected",
        "endpoint": ImapEndpoint("imap.example.com", 993, Security.TLS),
        "auth_type": "password",
        "username": "support",
        "folders": ("Sent", "INBOX"),
        "lease_fence": 3,
        "updated_at": NOW,
    }
    values.update(changes)
    return ProviderConfig(**values)  # type: ignore[arg-type]


def record(
    config: ProviderConfig | None = None, last_sync_at: datetime | None = None
) -> ProviderRecord:
    return ProviderRecord(
        config=config or provider(),
        created_at=NOW - timedelta(days=1),
        last_sync_at=last_sync_at,
        error_message=None,
        has_password=True,
    )


def test_folder_tree_orders_inbox_first_and_names_parents_and_roles() -> None:
    listing = [
        FolderListing("Work/Clients", "/", ("\\HasNoChildren",)),
        FolderListing("Sent", "/", ("\\HasNoChildren", "\\Sent")),
        FolderListing("Work", "/", ("\\HasChildren", "\\Noselect")),
        FolderListing("INBOX", "/", ()),
        FolderListing("[Gmail]/All Mail", "/", ("\\All",)),
        FolderListing("Flat", None, ()),
    ]
    views = folders_view(listing, monitored=("INBOX", "Work/Clients"))
    assert [v["name"] for v in views] == [
        "INBOX",
        "[Gmail]/All Mail",
        "Flat",
        "Sent",
        "Work",
        "Work/Clients",
    ]
    by_name = {v["name"]: v for v in views}
    assert by_name["Sent"]["specialUse"] == "sent"
    assert by_name["[Gmail]/All Mail"]["specialUse"] == "all"
    assert by_name["[Gmail]/All Mail"]["parent"] is None  # [Gmail] itself is not listed
    assert by_name["Work/Clients"]["parent"] == "Work"
    assert by_name["Work"]["selectable"] is False
    assert by_name["Work/Clients"]["monitored"] is True
    assert by_name["Sent"]["monitored"] is False
    assert by_name["Flat"]["delimiter"] is None


@pytest.mark.parametrize(
    ("plan", "running", "capabilities", "expected"),
    [
        (ConnectionPlan(("INBOX", "Sent"), ()), True, ("IMAP4REV1", "IDLE"), ["idle", "idle"]),
        (ConnectionPlan(("INBOX",), ("Sent",)), True, None, ["idle", "polling"]),
        (ConnectionPlan(("INBOX", "Sent"), ()), True, ("IMAP4REV1",), ["polling", "polling"]),
        (ConnectionPlan(("INBOX", "Sent"), ()), False, None, ["stopped", "stopped"]),
        (None, True, None, ["idle", "idle"]),
    ],
    ids=["all-idle", "budget-poller", "server-without-idle", "paused", "no-plan"],
)
def test_folder_modes(
    plan: ConnectionPlan | None,
    running: bool,
    capabilities: tuple[str, ...] | None,
    expected: list[str],
) -> None:
    modes = folder_modes(("INBOX", "Sent"), plan, running=running, capabilities=capabilities)
    assert [modes["INBOX"], modes["Sent"]] == expected


def test_status_combines_cursors_counters_and_the_live_check() -> None:
    status = ProviderStatusRecord(
        record=record(last_sync_at=NOW - timedelta(seconds=42)),
        lease_owner="worker-a",
        lease_expires_at=NOW + timedelta(seconds=20),
        lease_live=True,
        last_error=None,
        capabilities=("IDLE",),
        cursors=(CursorRow("INBOX", 7, 40, NOW), CursorRow("Sent", 9, 5, NOW)),
    )
    stats = {
        "events:INBOX": "12",
        "dead_letters:INBOX": "1",
        "last_event_ms:INBOX": str(int(NOW.timestamp() * 1000)),
    }
    live = LiveCheck(
        NOW,
        {"INBOX": ServerFolderStatus(7, 46, 30), "Sent": ServerFolderStatus(10, 8, 3)},
        None,
    )
    view = status_view(
        status, plan=ConnectionPlan(("INBOX",), ("Sent",)), stats=stats, live=live, now=NOW
    )
    assert view["state"] == "active"
    assert view["syncAgeS"] == 42
    assert view["lease"] == {
        "holder": "worker-a",
        "expiresAt": "2026-11-23T12:00:20+00:00",
        "live": True,
    }
    inbox, sent = view["folders"]  # type: ignore[misc]
    assert inbox["folder"] == "INBOX" and inbox["mode"] == "idle"
    assert inbox["events"] == 12 and inbox["deadLetters"] == 1
    assert inbox["lastEventAt"] == "2026-11-23T12:00:00+00:00"
    assert inbox["pendingUids"] == 5  # UIDNEXT 46: UIDs 41..45 are above the cursor
    assert sent["mode"] == "polling"
    assert sent["events"] == 0 and sent["lastEventAt"] is None
    assert sent["pendingUids"] is None  # UIDVALIDITY changed: the listener re-baselines


def test_status_without_redis_or_live_check_and_paused() -> None:
    status = ProviderStatusRecord(
        record=record(provider(is_paused=True)),
        lease_owner=None,
        lease_expires_at=None,
        lease_live=False,
        last_error="login rejected",
        capabilities=None,
        cursors=(),
    )
    view = status_view(status, plan=None, stats=None, live=None, now=NOW)
    assert view["state"] == "paused"
    assert view["countersAvailable"] is False and view["live"] is None
    assert view["syncAgeS"] is None and view["lastError"] == "login rejected"
    for folder in view["folders"]:  # type: ignore[attr-defined]
        assert folder["events"] is None and folder["cursor"] is None
        assert folder["mode"] == "stopped"


def test_provider_view_has_no_secret_and_says_whether_one_is_stored() -> None:
    view = provider_view(record())
    assert view["hasPassword"] is True
    assert not {"password", "secret", "tlsCaFile"} & set(view)
    assert view["security"] == "tls" and view["folders"] == ["Sent", "INBOX"]


@pytest.mark.parametrize(
    ("configured", "found", "missing"),
    [
        (("INBOX",), ("INBOX",), ()),
        (("inbox",), ("INBOX",), ()),
        (("INBOX", "Sent"), ("INBOX",), ("Sent",)),
        (("sent",), ("Sent",), ("sent",)),
    ],
    ids=["present", "inbox-any-case", "missing", "other-names-are-exact"],
)
def test_missing_folders(
    configured: tuple[str, ...], found: tuple[str, ...], missing: tuple[str, ...]
) -> None:
    assert missing_folders(configured, found) == missing
