"""Follows one folder in IDLE and publishes its new mail (shell).

State machine (the connection part is ``connection_loop``; decisions are in ``sync_plan``,
``folder_check`` and ``backoff``)::

    CONNECT + LOGIN ──► EXAMINE (read-only) ──► no cursor / UIDVALIDITY changed ──► REBASELINE
                             │ cursor matches                                     ▲      │
                             ▼                                       changed      │      │
                        CATCH UP ◄──── VERIFY: EXAMINE again ─────────────────────┘      │
                        every UID above the cursor, in batches:   ▲  │ unchanged         │
                        fetch BODY.PEEK[] → event or dead letter  │  ▼                   │
                        → publish → cursor        ◄───────────────┼── CATCH UP ◄─────────┘
                             │   ▲                                │
                             │   │ EXISTS announced during it     │ [CLOSED], EXPUNGE storm,
                             ▼   │                                │ EXISTS below the count,
                        IDLE / POLL WAIT ── EXISTS ──► CATCH UP   │ a search that does not fit
                                  │                               │ the cursor
                                  └── re-issue timer (IDLE) or poll timer ───► VERIFY
    any transient error → BACKOFF → CONNECT; permanent → PARKED; lease lost or stop → STOPPED

VERIFY is also the periodic reconciliation and the liveness check (it replaces a NOOP), so
a folder recreated under a session is noticed at once when the server's responses reveal
it, and otherwise within one IDLE re-issue (``IMAP_IDLE_REISSUE_MS``) or poll interval.
"""

from __future__ import annotations

import logging

from email_service import logs
from email_service.imap.session import ImapSession
from email_service.model import FolderKey, ProviderConfig
from email_service.sync.connection_loop import ConnectionLoop
from email_service.sync.folder_sync import FolderSync, ListenerContext
from providers.presets import idle_reissue_s

logger = logging.getLogger(__name__)

#: Why the periodic reconciliation verifies the folder (in the log when it changed).
RECONCILIATION = "the periodic reconciliation"


class FolderListener(ConnectionLoop):
    """Keeps one folder's new mail flowing to the stream until stopped."""

    def __init__(
        self,
        provider: ProviderConfig,
        folder: str,
        fence: int,
        context: ListenerContext,
        *,
        start_delay_s: float = 0.0,
    ) -> None:
        super().__init__(
            provider,
            fence,
            context,
            name=f"listener-{provider.id[:8]}-{folder}",
            start_delay_s=start_delay_s,
        )
        self.key = FolderKey(provider.tenant, provider.id, folder)
        self._sync = FolderSync(provider, folder, fence, context, self._stop)

    def _bind_log_context(self) -> None:
        logs.bind_context(
            tenant=self.key.tenant, provider=self.key.provider_id, folder=self.key.folder
        )

    def _follow(self, session: ImapSession) -> None:
        _status, cursor = self._sync.open_folder(session)
        self._mark_connected(session)
        idle = session.has_capability("IDLE")
        reissue_s = idle_reissue_s(self.provider.provider_type, self._settings.imap.idle_reissue_s)
        verify: str | None = None
        while not self._stop.is_set():
            verify = verify or session.take_signals().verify
            if verify is not None:
                cursor = self._sync.verify_folder(session, verify)
                verify = None
            cursor = self._sync.catch_up(session, cursor)
            if self._stop.is_set():
                break
            signals = session.take_signals()
            if signals.verify is not None or signals.new_mail:
                verify = signals.verify  # seen during the catch-up: the server won't repeat it
                continue
            self._check_renewal(session)
            self._set_state("idle" if idle else "polling")
            if idle:
                signals = session.wait_for_changes(self._stop, self._wait_cap_s(session, reissue_s))
                verify = signals.verify
                if not signals.new_mail and verify is None:
                    if self._stop.is_set():
                        break
                    self._check_renewal(session)
                    verify = RECONCILIATION  # also the liveness check before IDLE again
            else:
                wait_s = self._wait_cap_s(session, self._settings.imap.poll_interval_s)
                if self._stop.wait(wait_s):
                    break
                verify = RECONCILIATION
            self._set_state("syncing")
