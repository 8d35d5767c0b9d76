"""Follows one folder in IDLE and publishes its new mail (shell).

State machine (the connection part is ``connection_loop``; decisions are in ``sync_plan``
and ``backoff``)::

    CONNECT + LOGIN ──► EXAMINE (read-only) ──► no cursor / UIDVALIDITY changed ──► REBASELINE
                             │ cursor matches                                        │
                             ▼                                                       │
                        CATCH UP ◄───────────────────────────────────────────────────┘
                        every UID above the cursor, in batches:
                        fetch BODY.PEEK[] → event or dead letter → publish → cursor
                             │   ▲
                             │   │ EXISTS announced during the catch-up
                             ▼   │
                        IDLE / POLL WAIT ── EXISTS, re-issue timer (then NOOP),
                                            or poll timer (server without IDLE) ──► CATCH UP
    any transient error → BACKOFF → CONNECT; permanent → PARKED; lease lost or stop → STOPPED
"""

from __future__ import annotations

import logging

from email_service import logs
from email_service.connection_loop import ConnectionLoop
from email_service.folder_sync import FolderSync, ListenerContext
from email_service.imap_session import ImapSession
from email_service.model import FolderKey, ProviderConfig
from providers.presets import idle_reissue_ms

logger = logging.getLogger(__name__)


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
        reissue_ms = idle_reissue_ms(self.provider.provider_type, self._settings.idle_reissue_ms)
        reissue_s = reissue_ms / 1000
        while not self._stop.is_set():
            session.take_new_mail_hint()  # the SEARCH below sees whatever it announced
            cursor = self._sync.catch_up(session, cursor)
            if self._stop.is_set():
                break
            if session.take_new_mail_hint():
                continue  # mail arrived during the catch-up: the server will not repeat it
            self._check_renewal(session)
            self._set_state("idle" if idle else "polling")
            if idle:
                if not session.wait_for_changes(self._stop, self._wait_cap_s(session, reissue_s)):
                    if self._stop.is_set():
                        break
                    self._check_renewal(session)
                    session.noop()  # liveness check before re-entering IDLE
            else:
                wait_s = self._wait_cap_s(session, self._settings.poll_interval_ms / 1000)
                if self._stop.wait(wait_s):
                    break
                session.noop()
            self._set_state("syncing")
