"""A thread that keeps one IMAP connection of one provider alive (shell).

It runs the folder's state machine (``sync.folder_machine``, drawn in docs/architecture.md):
each transition's actions are carried out in order, and what came of them (a result, a
stop, or an error classified by ``classify_failure``) is fed back as the next event.
Subclasses carry out the actions about folders (``FolderListener``: one folder in IDLE;
``FolderPoller``: several by STATUS); this class the connection's: sleep, take a shared
slot, connect and log in (again with a refreshed token when a stale one was refused),
record a failure on the provider row (fenced, so the UI sees it), wait, disconnect.
"""

from __future__ import annotations

import logging
import threading
import time

from email_service import logs
from email_service.errors import EmailServiceError, LeaseLost
from email_service.imap.session import ConnectOptions, ImapSession, Login, OAuthLogin
from email_service.model import ProviderConfig
from email_service.sync.backoff import BackoffPolicy
from email_service.sync.context import ListenerContext
from email_service.sync.failures import (
    Failure,
    FailureKind,
    classify_failure,
    describe_failure,
)
from email_service.sync.folder_actions import (
    Action,
    Connect,
    CountRenewal,
    Disconnect,
    Log,
    MarkConnected,
    RecordFailure,
    Sleep,
    TakeSlot,
    WaitForTimer,
)
from email_service.sync.folder_machine import (
    Connected,
    Event,
    Failed,
    Folder,
    FolderRules,
    FolderState,
    Follows,
    Slept,
    SlotTaken,
    Stop,
    WaitEnded,
    decide_next,
    start,
)
from email_service.sync.slots import ConnectionSlots

logger = logging.getLogger(__name__)


class ConnectionLoop:
    """Connects, follows, reconnects: one thread and one connection per instance."""

    def __init__(
        self,
        provider: ProviderConfig,
        fence: int,
        context: ListenerContext,
        *,
        name: str,
        follows: Follows,
        folder_count: int = 1,
        idle_reissue_s: float = 0.0,
        start_delay_s: float = 0.0,
        slots: ConnectionSlots | None = None,
    ) -> None:
        self.provider = provider
        self.slots = slots
        self.fence = fence
        self._context = context
        self._settings = settings = context.settings
        self._stop = threading.Event()
        self._session: ImapSession | None = None
        self._login: Login | None = None
        self._connected_at: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._policy = BackoffPolicy(
            base_s=settings.reconnect.base_s,
            max_s=settings.reconnect.max_s,
            jitter_pct=settings.reconnect.jitter_pct,
            stable_s=settings.reconnect.stable_s,
        )
        self._rules = FolderRules(
            follows=follows,
            backoff=self._policy,
            start_delay_s=start_delay_s,
            poll_interval_s=settings.imap.poll_interval_s,
            idle_reissue_s=idle_reissue_s,
            timer_jitter_pct=settings.reconnect.timer_jitter_pct,
            folder_count=folder_count,
        )
        self._folder = Folder(self._rules)

    # -- control, from the supervisor's thread ---------------------------------------------

    @property
    def state(self) -> FolderState:
        return self._folder.state

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to finish; returns at once (``join`` waits)."""
        self._stop.set()
        session = self._session
        if session is not None:
            session.interrupt()

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def stopped(self) -> bool:
        return not self._thread.is_alive()

    # -- for subclasses -------------------------------------------------------------------

    def _bind_log_context(self) -> None:
        logs.bind_context(tenant=self.provider.tenant, provider=self.provider.id)

    def _perform_folder_action(self, session: ImapSession, action: Action) -> Event | None:
        """Carry out an action about the folders (``OpenFolder``, ``SyncFolder``, ...)."""
        raise NotImplementedError

    def _connection_opened(self) -> None:
        """A new session is logged in (before its first action)."""

    def _renew_in_s(self) -> float | None:
        """Seconds until the session must log in again; None if never (password login)."""
        session = self._session
        if session is None or session.renew_at is None:
            return None
        return (session.renew_at - self._context.clock()).total_seconds()

    def _random_unit(self) -> float:
        return self._context.rng.random()

    def _record(self, failure: Failure) -> Event | None:
        """Log, count and record ``failure`` on the provider row; a lost lease is ``Failed``."""
        goodbye = self._session.server_goodbye() if self._session is not None else None
        message = describe_failure(failure.message, goodbye)
        label = failure.kind.label
        logger.warning("%s error: %s", label, message)
        self._context.metrics.add("email_service_listener_errors_total", kind=label)
        try:
            self._context.providers.save_status(
                self.provider, status="error", error=message, fence=self.fence
            )
        except LeaseLost as exc:
            return Failed(classify_failure(exc))
        except EmailServiceError:
            logger.warning("could not record the error on the provider row", exc_info=True)
        return None

    # -- the loop, on the connection's thread ---------------------------------------------

    def _run(self) -> None:
        self._bind_log_context()
        transition = start(self._rules)
        while True:
            self._folder = transition.folder
            event = self._perform_all(transition.actions)
            if self._folder.state is FolderState.STOPPED:
                return
            if event is None:
                raise AssertionError(f"{transition} fed back nothing")
            if self._stop.is_set() and not isinstance(event, Failed):
                event = Stop()
            transition = decide_next(self._folder, event)

    def _perform_all(self, actions: tuple[Action, ...]) -> Event | None:
        """Carry out ``actions`` in order until one feeds back an event (the last one does;
        an earlier one only when it failed)."""
        for action in actions:
            try:
                event = self._perform(action)
            except Exception as exc:
                return self._failed(exc, action)
            if event is not None:
                return event
        return None

    def _failed(self, exc: Exception, action: Action) -> Failed:
        stale_token = (
            isinstance(action, Connect)
            and not action.refresh_token
            and isinstance(self._login, OAuthLogin)
            and not self._login.fresh
        )
        failure = classify_failure(exc, stopping=self._stop.is_set(), stale_token=stale_token)
        if failure.kind is FailureKind.UNEXPECTED:
            logger.exception("connection loop failed unexpectedly")
        connected_at = self._connected_at
        connected_for_s = None if connected_at is None else time.monotonic() - connected_at
        return Failed(failure, connected_for_s, self._random_unit())

    def _perform(self, action: Action) -> Event | None:
        match action:
            case Sleep(seconds):
                return Stop() if self._stop.wait(seconds) else Slept()
            case TakeSlot():
                assert self.slots is not None, "only a visiting poller takes slots"
                return SlotTaken() if self.slots.take(self._stop) else Stop()
            case Connect(refresh_token):
                return self._connect(refresh_token)
            case Disconnect(give_back_slot):
                self._close_session()
                if give_back_slot and self.slots is not None:
                    self.slots.give_back()
                return None
            case MarkConnected():
                self._mark_connected()
                return None
            case RecordFailure(failure):
                return self._record(failure)
            case CountRenewal():
                logger.info("access token due for renewal; logging in again")
                self._context.metrics.add("email_service_oauth_renewals_total")
                return None
            case Log(level, message):
                logger.log(level, message)
                return None
            case WaitForTimer(timeout_s):
                return Stop() if self._stop.wait(timeout_s) else WaitEnded(self._renew_in_s())
        assert self._session is not None, f"{action} needs a session"
        return self._perform_folder_action(self._session, action)

    def _connect(self, refresh_token: bool) -> Connected:
        self._connected_at = None
        previous, self._login = self._login, None
        rejected = None
        if refresh_token and isinstance(previous, OAuthLogin):
            rejected = previous.access_token
        self._login = login = self._context.load_login(self.provider, rejected=rejected)
        endpoint = self.provider.endpoint
        options = ConnectOptions.for_endpoint(endpoint, self._settings.imap)
        self._session = session = ImapSession.open(endpoint, login, options)
        self._connected_at = time.monotonic()
        self._connection_opened()
        return Connected(idle_capable=session.has_capability("IDLE"))

    def _mark_connected(self) -> None:
        assert self._session is not None, "marked connected without a session"
        self._context.providers.save_status(
            self.provider,
            status="connected",
            error=None,
            fence=self.fence,
            capabilities=self._session.capabilities,
            synced=True,
        )

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()
