"""Per-folder cursors, fenced by the provider's lease (shell).

The truth is one ``imap_folder_state`` row per folder, so listeners of two folders of one
provider never overwrite each other. Every write also refreshes the provider's
``folder_state`` JSON (DESIGN.md section 4) for readers of the product's schema; that copy
is rebuilt from the rows each time, so a concurrent write can leave it a step behind but
never loses a folder.

Every write carries the fencing value the listener got with its lease; when the provider's
``lease_fence`` has moved on, the write changes nothing and raises ``LeaseLost``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, Engine, select, update

from email_service.model import FolderCursor, FolderKey
from email_service.store.engine import transaction
from email_service.store.fencing import check_fence
from email_service.store.schema import imap_email_provider_config, imap_folder_state

_state = imap_folder_state
_config = imap_email_provider_config


def _key_filter(key: FolderKey) -> list[ColumnElement[bool]]:
    return [
        _state.c.email_provider_id == key.provider_id,
        _state.c.tenant == key.tenant,
        _state.c.folder == key.folder,
    ]


class CursorStore:
    """Loads and saves folder cursors."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load_cursor(self, key: FolderKey) -> FolderCursor | None:
        query = select(_state.c.uid_validity, _state.c.last_uid).where(*_key_filter(key))
        with transaction(self._engine) as connection:
            row = connection.execute(query).first()
        return None if row is None else FolderCursor(row.uid_validity, row.last_uid)

    def save_baseline(self, key: FolderKey, cursor: FolderCursor, fence: int) -> None:
        """Set the cursor outright (new folder, or UIDVALIDITY changed)."""
        now = datetime.now(UTC)
        with transaction(self._engine) as connection:
            check_fence(connection, key.tenant, key.provider_id, fence)
            changed = connection.execute(
                update(_state)
                .where(*_key_filter(key))
                .values(
                    uid_validity=cursor.uid_validity,
                    last_uid=cursor.last_uid,
                    last_seen_at=now,
                    updated_at=now,
                )
            ).rowcount
            if changed == 0:
                connection.execute(
                    _state.insert().values(
                        email_provider_id=key.provider_id,
                        tenant=key.tenant,
                        folder=key.folder,
                        uid_validity=cursor.uid_validity,
                        last_uid=cursor.last_uid,
                        last_seen_at=now,
                        updated_at=now,
                    )
                )
            _refresh_folder_state_json(connection, key)

    def advance_cursor(self, key: FolderKey, cursor: FolderCursor, fence: int) -> None:
        """Move ``last_uid`` forward (never back) within the same UIDVALIDITY."""
        now = datetime.now(UTC)
        with transaction(self._engine) as connection:
            check_fence(connection, key.tenant, key.provider_id, fence)
            connection.execute(
                update(_state)
                .where(
                    *_key_filter(key),
                    _state.c.uid_validity == cursor.uid_validity,
                    _state.c.last_uid < cursor.last_uid,
                )
                .values(last_uid=cursor.last_uid, last_seen_at=now, updated_at=now)
            )
            _refresh_folder_state_json(connection, key)


def _refresh_folder_state_json(connection: Connection, key: FolderKey) -> None:
    rows = connection.execute(
        select(
            _state.c.folder, _state.c.uid_validity, _state.c.last_uid, _state.c.last_seen_at
        ).where(_state.c.email_provider_id == key.provider_id, _state.c.tenant == key.tenant)
    ).fetchall()
    folder_state = {
        row.folder: {
            "uid_validity": row.uid_validity,
            "last_uid": row.last_uid,
            "last_seen_at": row.last_seen_at.isoformat() if row.last_seen_at else None,
        }
        for row in rows
    }
    connection.execute(
        update(_config)
        .where(_config.c.email_provider_id == key.provider_id, _config.c.tenant == key.tenant)
        .values(folder_state=folder_state)
    )
