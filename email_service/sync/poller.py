"""Follows several folders of one provider on one connection, polling with STATUS (shell).

The folders beyond a provider's connection budget (``sync.budget.plan_connections``) share one
``FolderPoller``. It never IDLEs, so it may switch the selected folder whenever it likes.
Its turns and waits are decided by the folder's state machine (``sync.folder_machine``,
drawn in docs/architecture.md); this class carries out the two actions about a folder:

- *check* it: on the first visit of a connection EXAMINE it (the cursor re-baselined if new
  or UIDVALIDITY changed); after that STATUS, or EXAMINE again for the selected folder
  (STATUS may be stale there), and compare with what it was caught up to
  (``sync.plan.plan_sync``, ``sync.budget.should_catch_up``);
- *sync* it: catch it up (``FolderSync``) when it changed.

A folder found missing is recorded on the provider row and looked at again after the
longest backoff while the others go on. A *visiting* poller (``slots`` given: its tenant
is over its connection cap, ``budget`` rule 4) checks every folder once per connection;
what each folder was caught up to is kept between rounds, so a round is one STATUS per
unchanged folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from email_service import logs
from email_service.errors import FolderMissing
from email_service.imap.session import FolderStatus, ImapSession
from email_service.model import FolderCursor, ProviderConfig
from email_service.sync.budget import should_catch_up
from email_service.sync.connection_loop import ConnectionLoop
from email_service.sync.context import ListenerContext
from email_service.sync.failures import (
    classify_failure,
)
from email_service.sync.folder_actions import (
    Action,
    CheckPolled,
    SyncPolled,
)
from email_service.sync.folder_machine import (
    Event,
    Follows,
    PolledChecked,
    PolledSynced,
)
from email_service.sync.folder_sync import FolderSync
from email_service.sync.plan import Rebaseline, plan_sync
from email_service.sync.slots import ConnectionSlots

logger = logging.getLogger(__name__)

#: One step of a poller's turn at a folder (check it, or catch it up).
_Step = Callable[[ImapSession, "FolderSync"], bool]


@dataclass(frozen=True)
class _Followed:
    """A folder caught up on the current connection."""

    cursor: FolderCursor
    #: UIDNEXT of the EXAMINE before that catch-up: every UID below it has been seen.
    seen_uid_next: int | None


@dataclass(frozen=True)
class _ToSync:
    """A checked folder to catch up: the EXAMINE's status and the cursor to start from."""

    status: FolderStatus
    cursor: FolderCursor


class FolderPoller(ConnectionLoop):
    """Keeps several folders' new mail flowing to the stream over one connection."""

    def __init__(
        self,
        provider: ProviderConfig,
        folders: Sequence[str],
        fence: int,
        context: ListenerContext,
        *,
        start_delay_s: float = 0.0,
        slots: ConnectionSlots | None = None,
    ) -> None:
        if not folders:
            raise ValueError("a poller needs at least one folder")
        super().__init__(
            provider,
            fence,
            context,
            name=f"poller-{provider.id[:8]}",
            follows=Follows.FOLDERS if slots is None else Follows.VISITS,
            folder_count=len(folders),
            start_delay_s=start_delay_s,
            slots=slots,
        )
        self.folders = tuple(folders)
        self._syncs = tuple(
            FolderSync(provider, folder, fence, context, self._stop) for folder in self.folders
        )
        self._followed: dict[str, _Followed] = {}
        self._selected: str | None = None
        self._to_sync: _ToSync | None = None
        #: Folders found missing, with the monotonic time to look for them again.
        self._missing_until: dict[str, float] = {}

    def known_cursors(self) -> dict[str, FolderCursor]:
        """The cursor of every folder caught up on the current connection (a copy)."""
        return {folder: followed.cursor for folder, followed in dict(self._followed).items()}

    def _bind_log_context(self) -> None:
        logs.bind_context(
            tenant=self.provider.tenant, provider=self.provider.id, folder=",".join(self.folders)
        )

    def _connection_opened(self) -> None:
        self._selected = None
        if self.slots is None:  # visiting: remember what was caught up between rounds
            self._followed = {}

    def _perform_folder_action(self, session: ImapSession, action: Action) -> Event | None:
        match action:
            case CheckPolled(index):
                changed = self._on_folder(session, self._syncs[index], self._check)
                return PolledChecked(index, changed, self._renew_in_s(), self._random_unit())
            case SyncPolled(index):
                self._on_folder(session, self._syncs[index], self._catch_up)
                return PolledSynced(index, self._renew_in_s(), self._random_unit())
        raise AssertionError(f"a poller does not {action}")

    def _on_folder(self, session: ImapSession, sync: FolderSync, step: _Step) -> bool:
        """``step`` for one folder, unless it is missing; a folder missing is recorded and
        left alone for the longest backoff, while the others go on."""
        folder = sync.key.folder
        retry_at = self._missing_until.get(folder)
        if retry_at is not None and time.monotonic() < retry_at:
            return False
        logs.bind_context(folder=folder)
        try:
            result = step(session, sync)
        except FolderMissing as exc:
            self._followed.pop(folder, None)
            self._missing_until[folder] = time.monotonic() + self._policy.max_s
            self._record(classify_failure(exc))
            return False
        finally:
            logs.bind_context(folder=",".join(self.folders))
        if retry_at is not None:  # back after being missing
            del self._missing_until[folder]
            if not self._missing_until:  # nothing else missing: clear the recorded error
                self._mark_connected()
        return result

    def _check(self, session: ImapSession, sync: FolderSync) -> bool:
        """Whether ``sync``'s folder is new on this connection or has changed (EXAMINEd
        then, with the cursor to catch up from kept for ``_catch_up``)."""
        folder = sync.key.folder
        known = self._followed.get(folder)
        self._to_sync = None
        if known is not None and self._selected == folder:
            self._selected = None  # a failed EXAMINE leaves nothing selected
            status = session.examine(folder)
            self._selected = folder
            if not _changed(known, status.uid_validity, status.uid_next):
                return False
            cursor = sync.ensure_cursor(session, status.uid_validity, status.uid_next)
        else:
            if known is not None:
                probe = session.status(folder)
                if not _changed(known, probe.uid_validity, probe.uid_next):
                    return False
            self._selected = None
            status, cursor = sync.open_folder(session)
            self._selected = folder
        self._to_sync = _ToSync(status, cursor)
        return True

    def _catch_up(self, session: ImapSession, sync: FolderSync) -> bool:
        pending, self._to_sync = self._to_sync, None
        assert pending is not None, "caught up a folder that was not checked"
        cursor = sync.catch_up(session, pending.cursor)
        if not self._stop.is_set():  # a stopped catch-up may not have reached uid_next
            self._followed[sync.key.folder] = _Followed(cursor, pending.status.uid_next)
        return True


def _changed(known: _Followed, uid_validity: int, uid_next: int | None) -> bool:
    if isinstance(plan_sync(known.cursor, uid_validity, uid_next), Rebaseline):
        return True  # a new UIDVALIDITY, or UIDs that started again: ensure_cursor re-baselines
    return should_catch_up(
        known.cursor,
        seen_uid_next=known.seen_uid_next,
        uid_validity=uid_validity,
        uid_next=uid_next,
    )
