"""Follows several folders of one provider on one connection, polling with STATUS (shell).

The folders beyond a provider's connection budget (``sync.budget.plan_connections``) share one
``FolderPoller``. It never IDLEs, so it may switch the selected folder whenever it likes.
Decisions are in ``budget`` (which folder next, how long to wait, whether it changed);
publishing and cursors are ``FolderSync``'s, as for the IDLE listener::

    CONNECT + LOGIN ──► mark connected
                              │
        ┌────────────────────►▼
        │   next folder in turn (plan_poll_step: interval / folders apart, jittered)
        │        │ first visit on this connection        │ visited before
        │        ▼                                       ▼
        │   EXAMINE → cursor (rebaseline if       STATUS (EXAMINE again if it is the
        │   new or UIDVALIDITY changed)           selected folder: STATUS may be stale)
        │        │                                       │ should_catch_up? ─ no ──┐
        │        ▼                                       ▼ yes                     │
        │   CATCH UP (publish, cursor) ◄────── EXAMINE → cursor                    │
        │        │                                                                 │
        └─ WAIT (stop-aware) ◄─────────────────────────────────────────────────────┘

    folder missing → recorded on the provider row; that folder is retried after the longest
    backoff while the others go on. Any other error → the connection loop's BACKOFF,
    PARKED or STOPPED, and on reconnect every folder is visited afresh.

A *visiting* poller (``slots`` given: its tenant is over its connection cap, ``budget``
rule 4) visits every folder once per connection, in order, and returns; the connection
loop logs out, gives the shared slot back and comes again after the poll interval. What
each folder was caught up to is kept between rounds, so a round is one STATUS per
unchanged folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from email_service import logs
from email_service.errors import FolderMissing
from email_service.imap.session import ImapSession
from email_service.model import FolderCursor, ProviderConfig
from email_service.sync.budget import plan_poll_step, should_catch_up
from email_service.sync.connection_loop import ConnectionLoop
from email_service.sync.folder_sync import FolderSync, ListenerContext
from email_service.sync.plan import Rebaseline, plan_sync
from email_service.sync.slots import ConnectionSlots

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Followed:
    """A folder caught up on the current connection."""

    cursor: FolderCursor
    #: UIDNEXT of the EXAMINE before that catch-up: every UID below it has been seen.
    seen_uid_next: int | None


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
            start_delay_s=start_delay_s,
            slots=slots,
        )
        self.folders = tuple(folders)
        self._syncs = tuple(
            FolderSync(provider, folder, fence, context, self._stop) for folder in self.folders
        )
        self._followed: dict[str, _Followed] = {}
        self._selected: str | None = None
        #: Folders found missing, with the monotonic time to look for them again.
        self._missing_until: dict[str, float] = {}

    def known_cursors(self) -> dict[str, FolderCursor]:
        """The cursor of every folder caught up on the current connection (a copy)."""
        return {folder: followed.cursor for folder, followed in dict(self._followed).items()}

    def _bind_log_context(self) -> None:
        logs.bind_context(
            tenant=self.provider.tenant, provider=self.provider.id, folder=",".join(self.folders)
        )

    def _follow(self, session: ImapSession) -> None:
        self._selected = None
        if self.slots is not None:  # visiting: one round, remembering what was caught up
            self._mark_connected(session)
            for sync in self._syncs:
                if self._stop.is_set():
                    return
                self._visit(session, sync)
            return
        self._followed = {}
        self._mark_connected(session)
        interval_s = self._settings.imap.poll_interval_s
        previous: int | None = None
        while not self._stop.is_set():
            step = plan_poll_step(
                previous,
                folder_count=len(self._syncs),
                interval_s=interval_s,
                jitter_pct=self._settings.reconnect.timer_jitter_pct,
                random_unit=self._context.rng.random(),
            )
            previous = step.folder_index
            self._visit(session, self._syncs[step.folder_index])
            self._check_renewal(session)
            self._set_state("polling")
            if self._stop.wait(self._wait_cap_s(session, step.wait_s)):
                break

    def _visit(self, session: ImapSession, sync: FolderSync) -> None:
        folder = sync.key.folder
        retry_at = self._missing_until.get(folder)
        if retry_at is not None and time.monotonic() < retry_at:
            return
        logs.bind_context(folder=folder)
        try:
            self._check(session, sync)
        except FolderMissing as exc:
            self._followed.pop(folder, None)
            self._missing_until[folder] = time.monotonic() + self._policy.max_s
            self._record_failure("permanent", exc)
            return
        finally:
            logs.bind_context(folder=",".join(self.folders))
        if retry_at is not None:  # back after being missing
            del self._missing_until[folder]
            if not self._missing_until:  # nothing else missing: clear the recorded error
                self._mark_connected(session)

    def _check(self, session: ImapSession, sync: FolderSync) -> None:
        """Catch ``sync``'s folder up if it is new on this connection or has changed."""
        folder = sync.key.folder
        known = self._followed.get(folder)
        if known is not None and self._selected == folder:
            self._selected = None  # a failed EXAMINE leaves nothing selected
            status = session.examine(folder)
            self._selected = folder
            if not _changed(known, status.uid_validity, status.uid_next):
                return
            self._set_state("syncing")
            cursor = sync.ensure_cursor(session, status.uid_validity, status.uid_next)
        else:
            if known is not None:
                probe = session.status(folder)
                if not _changed(known, probe.uid_validity, probe.uid_next):
                    return
            self._set_state("syncing")
            self._selected = None
            status, cursor = sync.open_folder(session)
            self._selected = folder
        cursor = sync.catch_up(session, cursor)
        if not self._stop.is_set():  # a stopped catch-up may not have reached uid_next
            self._followed[folder] = _Followed(cursor, status.uid_next)


def _changed(known: _Followed, uid_validity: int, uid_next: int | None) -> bool:
    if isinstance(plan_sync(known.cursor, uid_validity, uid_next), Rebaseline):
        return True  # a new UIDVALIDITY, or UIDs that started again: ensure_cursor re-baselines
    return should_catch_up(
        known.cursor,
        seen_uid_next=known.seen_uid_next,
        uid_validity=uid_validity,
        uid_next=uid_next,
    )
