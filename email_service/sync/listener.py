"""Follows one folder in IDLE and publishes its new mail (shell).

The folder's state machine is ``sync.folder_machine`` (drawn in docs/architecture.md, "The
state machine of a folder"); this class carries out its actions about the folder: open it
(EXAMINE, the cursor re-baselined when it is not the folder's), catch up (``FolderSync``,
verifying first when asked), and wait in IDLE for what the server announces.

Verifying (EXAMINE again) is also the periodic reconciliation and the liveness check (it
replaces a NOOP), so a folder recreated under a session is noticed at once when the
server's responses reveal it, and otherwise within one IDLE re-issue
(``IMAP_IDLE_REISSUE_MS``) or poll interval.
"""

from __future__ import annotations

import logging

from email_service import logs
from email_service.imap.session import ImapSession
from email_service.model import FolderCursor, FolderKey, ProviderConfig
from email_service.sync.connection_loop import ConnectionLoop
from email_service.sync.context import ListenerContext
from email_service.sync.folder_actions import (
    Action,
    OpenFolder,
    SyncFolder,
    WaitForChanges,
)
from email_service.sync.folder_machine import (
    CaughtUp,
    ChangesSeen,
    Event,
    Follows,
    Stop,
    WaitEnded,
)
from email_service.sync.folder_sync import FolderSync
from providers.presets import idle_reissue_s

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
            follows=Follows.FOLDER,
            idle_reissue_s=idle_reissue_s(
                provider.provider_type, context.settings.imap.idle_reissue_s
            ),
            start_delay_s=start_delay_s,
        )
        self.key = FolderKey(provider.tenant, provider.id, folder)
        self._sync = FolderSync(provider, folder, fence, context, self._stop)
        self._cursor: FolderCursor | None = None

    def _bind_log_context(self) -> None:
        logs.bind_context(
            tenant=self.key.tenant, provider=self.key.provider_id, folder=self.key.folder
        )

    def _perform_folder_action(self, session: ImapSession, action: Action) -> Event | None:
        match action:
            case OpenFolder():
                _status, self._cursor = self._sync.open_folder(session)
                return None
            case SyncFolder(verify):
                assert self._cursor is not None, "caught up before the folder was opened"
                verify = verify or session.take_signals().verify
                if verify is not None:
                    self._cursor = self._sync.verify_folder(session, verify)
                self._cursor = self._sync.catch_up(session, self._cursor)
                signals = session.take_signals()
                return CaughtUp(signals.new_mail, signals.verify, self._renew_in_s())
            case WaitForChanges(timeout_s):
                signals = session.wait_for_changes(self._stop, timeout_s)
                if signals.new_mail or signals.verify is not None:
                    return ChangesSeen(signals.new_mail, signals.verify)
                return Stop() if self._stop.is_set() else WaitEnded(self._renew_in_s())
        raise AssertionError(f"a listener does not {action}")
