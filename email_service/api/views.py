"""What the API answers: JSON shapes built from the stores' records (core: data in, dict out).

Nothing secret is ever put into these shapes: a provider shows ``hasPassword``, never the
password, and no other secret (client secrets, tokens) is read at all. ``openapi`` describes
each shape; the schemathesis run checks every response against that description.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from email_service.errors import (
    AuthenticationFailed,
    ConnectionLost,
    EmailServiceError,
    HostRefused,
    HostUnresolvable,
    SecretUndecryptable,
    ServerThrottled,
    TlsVerificationFailed,
)
from email_service.model import PageKey
from email_service.store.providers import CursorRow, ProviderRecord, ProviderStatusRecord
from email_service.sync.budget import ConnectionPlan, rank_folders

#: RFC 6154 special-use attributes (and Gmail's \\Important), lower-cased, without "\\".
SPECIAL_USE = ("all", "archive", "drafts", "flagged", "important", "junk", "sent", "trash")
#: LIST attributes that mean the name cannot be selected, so it cannot be monitored.
NOT_SELECTABLE = ("\\noselect", "\\nonexistent")


@dataclass(frozen=True)
class FolderListing:
    """One LIST entry, as ``imap_calls`` hands it over."""

    name: str
    delimiter: str | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class FolderListings:
    """A server's folders, and whether the listing stopped at ``limit`` (or its byte bound)."""

    folders: tuple[FolderListing, ...]
    truncated: bool
    limit: int


@dataclass(frozen=True)
class ServerFolderStatus:
    """A folder's STATUS on the server, for the live status."""

    uid_validity: int
    uid_next: int | None
    messages: int


@dataclass(frozen=True)
class ProbeOutcome:
    """The result of ``POST .../test``: how far the connection got, and what was found."""

    ok: bool
    stage: str
    error: str | None
    capabilities: tuple[str, ...]
    folders_found: tuple[str, ...]
    missing_folders: tuple[str, ...]
    elapsed_ms: int
    #: The server listed more folders than a listing reads: ``folders_found`` is the start.
    folders_truncated: bool = False


@dataclass(frozen=True)
class LiveCheck:
    """STATUS of every configured folder, or why it could not be had."""

    checked_at: datetime
    folders: Mapping[str, ServerFolderStatus]
    error: str | None


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def failure_stage(exc: EmailServiceError) -> str:
    """Where a connection test stopped, for the UI to point at the right field."""
    match exc:
        case SecretUndecryptable():
            return "credentials"
        case HostUnresolvable() | HostRefused():
            return "resolve"
        case TlsVerificationFailed():
            return "tls"
        case AuthenticationFailed() | ServerThrottled():
            return "login"
        case ConnectionLost():
            return "connect"
    return "connect"


def provider_view(record: ProviderRecord) -> dict[str, object]:
    config = record.config
    return {
        "id": config.id,
        "name": config.name,
        "mailbox": config.mailbox,
        "providerType": config.provider_type,
        "authType": config.auth_type,
        "host": config.endpoint.host,
        "port": config.endpoint.port,
        "security": config.endpoint.security.value,
        "username": config.username,
        "folders": list(config.folders),
        "maxConnections": config.max_connections,
        "isActive": config.is_active,
        "isPaused": config.is_paused,
        "status": config.status,
        "errorMessage": record.error_message,
        "lastSyncAt": iso(record.last_sync_at),
        "hasPassword": record.has_password,
        "hasTlsCaFile": config.endpoint.tls_ca_file is not None,
        "createdAt": iso(record.created_at),
        "updatedAt": iso(config.updated_at),
    }


#: Bytes of provider JSON one page holds at most (a page always holds at least one): 200
#: providers of 100 long folder names each would otherwise be a 60 MB answer.
MAX_PAGE_BYTES = 1024 * 1024


def provider_page(
    records: Sequence[ProviderRecord], limit: int, max_bytes: int = MAX_PAGE_BYTES
) -> tuple[list[dict[str, object]], PageKey | None]:
    """Up to ``limit`` provider views of ``records`` (which may hold one more, to tell that
    there are more) within ``max_bytes``, and the key to continue after, if anything is left.
    """
    views: list[dict[str, object]] = []
    size = 0
    for record in records[:limit]:
        view = provider_view(record)
        size += len(json.dumps(view))
        if views and size > max_bytes:
            break
        views.append(view)
    if len(views) == len(records):
        return views, None
    last = records[len(views) - 1]
    return views, PageKey(last.created_at, last.config.id)


def probe_view(outcome: ProbeOutcome) -> dict[str, object]:
    return {
        "ok": outcome.ok,
        "stage": outcome.stage,
        "error": outcome.error,
        "capabilities": list(outcome.capabilities),
        "foldersFound": list(outcome.folders_found),
        "missingFolders": list(outcome.missing_folders),
        "elapsedMs": outcome.elapsed_ms,
        "foldersTruncated": outcome.folders_truncated,
    }


def folders_view(
    listing: Sequence[FolderListing], monitored: Sequence[str]
) -> list[dict[str, object]]:
    """The folder tree as a flat list, parents before children, INBOX first.

    ``parent`` names the enclosing folder (by the server's hierarchy delimiter), so the UI
    can draw the tree; ``specialUse`` is the RFC 6154 role (``sent``, ``trash``, ...).
    """
    names = {folder.name for folder in listing}
    ordered = sorted(listing, key=lambda f: (f.name.upper() != "INBOX", f.name.casefold()))
    views: list[dict[str, object]] = []
    for folder in ordered:
        flags = folder.flags
        lowered = {flag.lower() for flag in flags}
        special = next((use for use in SPECIAL_USE if f"\\{use}" in lowered), None)
        parent = None
        if folder.delimiter and folder.delimiter in folder.name:
            candidate = folder.name.rsplit(folder.delimiter, 1)[0]
            parent = candidate if candidate in names else None
        views.append(
            {
                "name": folder.name,
                "delimiter": folder.delimiter,
                "parent": parent,
                "flags": list(flags),
                "specialUse": special,
                "selectable": not any(flag in lowered for flag in NOT_SELECTABLE),
                "monitored": folder.name in monitored,
            }
        )
    return views


def folder_modes(
    folders: Sequence[str],
    plan: ConnectionPlan | None,
    *,
    running: bool,
    capabilities: Sequence[str] | None,
) -> dict[str, str]:
    """``idle``, ``polling`` or ``stopped`` for each folder.

    Polling when the connection budget puts the folder on the shared poller, or when the
    server did not offer IDLE the last time a worker connected.
    """
    no_idle = capabilities is not None and "IDLE" not in {c.upper() for c in capabilities}
    modes = {}
    for folder in folders:
        if not running:
            modes[folder] = "stopped"
        elif no_idle or (plan is not None and folder in plan.polled_folders):
            modes[folder] = "polling"
        else:
            modes[folder] = "idle"
    return modes


def status_view(
    status: ProviderStatusRecord,
    *,
    plan: ConnectionPlan | None,
    stats: Mapping[str, str] | None,
    live: LiveCheck | None,
    now: datetime,
) -> dict[str, object]:
    """Per-folder progress of a provider; see ``docs/api.md`` for what each field means."""
    config = status.record.config
    state = "inactive" if not config.is_active else "paused" if config.is_paused else "active"
    folders = rank_folders(config.folders)
    modes = folder_modes(folders, plan, running=state == "active", capabilities=status.capabilities)
    cursors = {cursor.folder: cursor for cursor in status.cursors}
    last_sync = status.record.last_sync_at
    return {
        "providerId": config.id,
        "state": state,
        "status": config.status,
        "errorMessage": status.record.error_message,
        "lastError": status.last_error,
        "lastSyncAt": iso(last_sync),
        "syncAgeS": None if last_sync is None else max((now - last_sync).total_seconds(), 0.0),
        "lease": {
            "holder": status.lease_owner,
            "expiresAt": iso(status.lease_expires_at),
            "live": status.lease_live,
        },
        "capabilities": None if status.capabilities is None else list(status.capabilities),
        "countersAvailable": stats is not None,
        "live": None if live is None else {"checkedAt": iso(live.checked_at), "error": live.error},
        "folders": [
            _folder_status(folder, modes[folder], cursors.get(folder), stats, live)
            for folder in folders
        ],
    }


def _folder_status(
    folder: str,
    mode: str,
    cursor: CursorRow | None,
    stats: Mapping[str, str] | None,
    live: LiveCheck | None,
) -> dict[str, object]:
    def counter(name: str) -> int | None:
        if stats is None:
            return None
        return int(stats.get(f"{name}:{folder}", "0"))

    last_event_ms = None if stats is None else stats.get(f"last_event_ms:{folder}")
    server = None if live is None else live.folders.get(folder)
    pending = None
    if (
        server is not None
        and cursor is not None
        and server.uid_next is not None
        and server.uid_validity == cursor.uid_validity
    ):
        pending = max(server.uid_next - 1 - cursor.last_uid, 0)
    return {
        "folder": folder,
        "mode": mode,
        "cursor": None
        if cursor is None
        else {
            "uidValidity": cursor.uid_validity,
            "lastUid": cursor.last_uid,
            "updatedAt": iso(cursor.last_seen_at),
        },
        "events": counter("events"),
        "deadLetters": counter("dead_letters"),
        "lastEventAt": None
        if last_event_ms is None
        else iso(datetime.fromtimestamp(int(last_event_ms) / 1000, UTC)),
        "server": None
        if server is None
        else {
            "uidValidity": server.uid_validity,
            "uidNext": server.uid_next,
            "messages": server.messages,
        },
        "pendingUids": pending,
    }
