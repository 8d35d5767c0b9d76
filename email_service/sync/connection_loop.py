"""A thread that keeps one IMAP connection of one provider alive (shell).

Subclasses say what to do with a logged-in session (``_follow``); this loop connects, hands
the session over, and on failure reconnects after a backoff that cannot storm
(``sync/backoff.py``)::

    CONNECT ──ok──► _follow(session) ──stop──► STOPPED
       ▲                 │ transient error          │ permanent error       │ lease lost
       └──── BACKOFF ◄───┘                          ▼                       ▼
                                         PARKED (retry after the        STOPPED
                                         longest backoff, or sooner
                                         when the config changes)

A loop given ``slots`` follows in rounds (a visiting poller, ``budget`` rule 4): it takes a
slot before it connects, ``_follow`` checks everything once and returns, and the loop logs
out, gives the slot back and waits ``IMAP_POLL_INTERVAL_MS`` (jittered) before the next
round; a round that went through resets the failure count.

Every failure is recorded on the provider row (fenced), so the UI sees it. A session
logged in with an OAuth token logs in again, at once and without counting a failure,
when the token is due for renewal (``RenewLogin``); a refused token that was not fresh is
refreshed and tried once more before the refusal counts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from email_service import logs
from email_service.errors import (
    AuthenticationFailed,
    EmailServiceError,
    LeaseLost,
    PermanentError,
    ServerThrottled,
    TransientError,
)
from email_service.imap.session import ConnectOptions, ImapSession, OAuthLogin
from email_service.model import ProviderConfig
from email_service.sync.backoff import BackoffPolicy, failures_after_disconnect, next_delay_s
from email_service.sync.folder_sync import ListenerContext
from email_service.sync.slots import ConnectionSlots

logger = logging.getLogger(__name__)

#: Shortest IDLE or poll wait while a renewal is near, so the loop does not spin.
MIN_WAIT_S = 0.05


@dataclass(frozen=True)
class _Outcome:
    """How one attempt ended: ``stopped``, ``again`` (log in again now), ``round`` (a
    visiting round went through), ``failed`` (back off, at least ``hint_s``), ``parked``."""

    kind: str
    hint_s: float | None = None


class RenewLogin(Exception):
    """The session's OAuth token is due for renewal: log in again now (not a failure)."""


class ConnectionLoop:
    """Connects, follows, reconnects: one thread and one connection per instance."""

    def __init__(
        self,
        provider: ProviderConfig,
        fence: int,
        context: ListenerContext,
        *,
        name: str,
        start_delay_s: float = 0.0,
        slots: ConnectionSlots | None = None,
    ) -> None:
        self.provider = provider
        self.slots = slots
        self.fence = fence
        self.state = "starting"
        self._context = context
        self._settings = context.settings
        self._start_delay_s = start_delay_s
        self._stop = threading.Event()
        self._session: ImapSession | None = None
        self._connected_at: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._policy = BackoffPolicy(
            base_s=self._settings.reconnect.base_s,
            max_s=self._settings.reconnect.max_s,
            jitter_pct=self._settings.reconnect.jitter_pct,
            stable_s=self._settings.reconnect.stable_s,
        )

    # -- control, from the supervisor's thread ---------------------------------------------

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

    def _follow(self, session: ImapSession) -> None:
        """Use the logged-in ``session`` until stopped; raise to reconnect."""
        raise NotImplementedError

    def _set_state(self, state: str) -> None:
        self.state = state

    def _renewal_in_s(self, session: ImapSession) -> float | None:
        """Seconds until ``session`` must log in again; None if never (password login)."""
        if session.renew_at is None:
            return None
        return (session.renew_at - self._context.clock()).total_seconds()

    def _check_renewal(self, session: ImapSession) -> None:
        due_in = self._renewal_in_s(session)
        if due_in is not None and due_in <= 0:
            raise RenewLogin

    def _wait_cap_s(self, session: ImapSession, wait_s: float) -> float:
        """``wait_s``, shortened so the wait ends when the session is due for renewal."""
        due_in = self._renewal_in_s(session)
        return wait_s if due_in is None else max(min(wait_s, due_in), MIN_WAIT_S)

    def _mark_connected(self, session: ImapSession) -> None:
        self._context.providers.save_status(
            self.provider,
            status="connected",
            error=None,
            fence=self.fence,
            capabilities=session.capabilities,
            synced=True,
        )

    # -- the loop, on the connection's thread ---------------------------------------------

    def _run(self) -> None:
        self._bind_log_context()
        if self._stop.wait(self._start_delay_s):
            self._set_state("stopped")
            return
        failures = 0
        while not self._stop.is_set():
            outcome = self._attempt()
            if self._stop.is_set() or outcome.kind == "stopped":
                break
            if outcome.kind == "again":
                continue
            if outcome.kind == "parked":
                self._set_state("parked")
                self._stop.wait(self._policy.max_s)
                continue
            if outcome.kind == "round":
                failures = 0
                self._set_state("polling")
                self._stop.wait(self._round_wait_s())
                continue
            connected_at = self._connected_at
            connected_for = None if connected_at is None else time.monotonic() - connected_at
            failures = failures_after_disconnect(self._policy, failures, connected_for)
            delay = next_delay_s(
                self._policy,
                failures,
                random_unit=self._context.rng.random(),
                hint_s=outcome.hint_s,
            )
            self._set_state("backoff")
            logger.info("reconnecting in %.1fs (failure %d in a row)", delay, failures)
            self._stop.wait(delay)
        self._set_state("stopped")

    def _attempt(self) -> _Outcome:
        """Connect (after taking a slot, when visiting) and follow, once."""
        self._connected_at = None
        holding = False
        try:
            if self.slots is not None:
                self._set_state("waiting")
                holding = self.slots.take(self._stop)
                if not holding:
                    return _Outcome("stopped")
            self._set_state("connecting")
            session = self._open_session()
            if not self._stop.is_set():
                self._connected_at = time.monotonic()
                self._follow(session)
            return _Outcome("stopped" if self.slots is None else "round")
        except RenewLogin:
            logger.info("access token due for renewal; logging in again")
            self._context.metrics.add("email_service_oauth_renewals_total")
            return _Outcome("again")
        except LeaseLost:
            logger.warning("lease lost; stopping")
            return _Outcome("stopped")
        except ServerThrottled as exc:
            self._record_failure("throttled", exc)
            return _Outcome("failed", exc.retry_after_s)
        except TransientError as exc:
            self._record_failure("transient", exc)
            return _Outcome("failed")
        except PermanentError as exc:
            self._record_failure("permanent", exc)
            return _Outcome("parked")
        except Exception as exc:
            if not self._stop.is_set():
                logger.exception("connection loop failed unexpectedly")
            self._record_failure("unexpected", exc)
            return _Outcome("failed", self._policy.max_s / 2)
        finally:
            self._close_session()
            if holding and self.slots is not None:
                self.slots.give_back()

    def _round_wait_s(self) -> float:
        """Between two rounds of a visiting loop: the poll interval, jittered."""
        spread = 1 + self._settings.reconnect.timer_jitter_pct * (
            2 * self._context.rng.random() - 1
        )
        return self._settings.imap.poll_interval_s * spread

    def _open_session(self) -> ImapSession:
        login = self._context.load_login(self.provider)
        endpoint = self.provider.endpoint
        options = ConnectOptions.for_endpoint(endpoint, self._settings.imap)
        try:
            session = ImapSession.open(endpoint, login, options)
        except AuthenticationFailed:
            if not isinstance(login, OAuthLogin) or login.fresh:
                raise
            logger.info("access token refused; refreshing it and trying once more")
            login = self._context.load_login(self.provider, rejected=login.access_token)
            session = ImapSession.open(endpoint, login, options)
        self._session = session
        return session

    def _record_failure(self, kind: str, exc: BaseException) -> None:
        if self._stop.is_set():  # cutting the connection is how a stop interrupts a command
            logger.info("connection closed to stop (%s)", type(exc).__name__)
            return
        message = str(exc) if isinstance(exc, EmailServiceError) else type(exc).__name__
        goodbye = self._session.server_goodbye() if self._session is not None else None
        if goodbye and goodbye not in message:  # a BYE the library's error left out
            message = f"{message}; the server said: {goodbye}"
        logger.warning("%s error: %s", kind, message)
        self._context.metrics.add("email_service_listener_errors_total", kind=kind)
        try:
            self._context.providers.save_status(
                self.provider, status="error", error=message, fence=self.fence
            )
        except LeaseLost:
            self._stop.set()
        except EmailServiceError:
            logger.warning("could not record the error on the provider row", exc_info=True)

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()
