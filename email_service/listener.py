"""One folder of one provider, from IMAP to the stream, on its own thread (shell).

State machine (decisions are in ``sync_plan`` and ``backoff``; this module carries them out)::

              ┌────────────────────────────────────────────────────────────┐
              ▼                                                            │
    ┌──────────────────┐  transient error   ┌───────────┐  delay over      │
    │ CONNECT + LOGIN  │───────────────────►│  BACKOFF  │──────────────────┘
    └────────┬─────────┘                    └───────────┘
             │ ok                                 ▲ transient error from any state below
             ▼                                    │
    ┌──────────────────┐ no cursor, or UIDVALIDITY changed ┌──────────────┐
    │ EXAMINE (r/o)    │──────────────────────────────────►│  REBASELINE  │
    └────────┬─────────┘                                   └──────┬───────┘
             │ cursor matches                                     │
             ▼                                                    │
    ┌──────────────────┐◄─────────────────────────────────────────┘
    │ CATCH UP         │  every UID above the cursor, in batches:
    │                  │  fetch BODY.PEEK[] → event or dead letter → publish → cursor
    └────────┬─────────┘◄───────────────┐
             ▼                          │ EXISTS, or re-issue timer (NOOP first),
    ┌──────────────────┐                │ or poll timer when the server has no IDLE
    │ IDLE / POLL WAIT │────────────────┘
    └──────────────────┘
    permanent error (login rejected, folder missing, bad secret) → record on the provider
    row → PARKED: retry after the longest backoff, or sooner when the config changes
    (the supervisor restarts the listener). Lease lost → STOPPED. stop() → STOPPED.

The cursor moves only after the events of its UIDs are in Redis; the publisher skips UIDs
already published, so a crash between the two publishes nothing twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from email_service import logs
from email_service.backoff import BackoffPolicy, failures_after_disconnect, next_delay_s
from email_service.email_data import MessageMeta, build_email_data, sha256_hex
from email_service.errors import (
    EmailServiceError,
    LeaseLost,
    MessageUnparseable,
    PermanentError,
    PublishFailed,
    ServerThrottled,
    StorageUnavailable,
    TransientError,
)
from email_service.events import (
    build_dead_letter_fields,
    build_event_fields,
    choose_execution_id,
    event_id_for,
)
from email_service.imap_session import (
    ConnectOptions,
    FetchedMessage,
    ImapSession,
    PasswordLogin,
)
from email_service.metrics import Metrics
from email_service.model import FolderCursor, FolderKey, ProviderConfig
from email_service.parsing import parse_message
from email_service.publisher import EventPublisher, StreamEntry
from email_service.settings import Settings
from email_service.store.cursors import CursorStore
from email_service.store.providers import ProviderStore
from email_service.sync_plan import CatchUp, Rebaseline, plan_baseline, plan_sync, split_batches

logger = logging.getLogger(__name__)

#: Tries for a UID that SEARCH listed but FETCH did not return (some servers announce a
#: message before it can be fetched); after that it goes to the dead-letter stream.
UNFETCHABLE_TRIES = 3
#: Seconds between those tries.
UNFETCHABLE_RETRY_S = 0.5
#: Tries of one publish or cursor write before the listener reconnects and starts over.
WRITE_TRIES = 3

_retry_writes = retry(
    retry=retry_if_exception_type((PublishFailed, StorageUnavailable)),
    stop=stop_after_attempt(WRITE_TRIES),
    wait=wait_exponential(multiplier=0.2, max=2),
    reraise=True,
)


@dataclass
class ListenerContext:
    """What every listener of a worker shares."""

    settings: Settings
    cursors: CursorStore
    providers: ProviderStore
    publisher: EventPublisher
    load_login: Callable[[ProviderConfig], PasswordLogin]
    metrics: Metrics
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    rng: random.Random = field(default_factory=random.Random)


class FolderListener:
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
        self.provider = provider
        self.key = FolderKey(provider.tenant, provider.id, folder)
        self.fence = fence
        self.state = "starting"
        self._context = context
        self._settings = context.settings
        self._start_delay_s = start_delay_s
        self._stop = threading.Event()
        self._session: ImapSession | None = None
        self._connected_at: float | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"listener-{provider.id[:8]}-{folder}", daemon=True
        )
        self._policy = BackoffPolicy(
            base_s=self._settings.reconnect_base_ms / 1000,
            max_s=self._settings.reconnect_max_ms / 1000,
            jitter_pct=self._settings.reconnect_jitter_pct,
            stable_s=self._settings.reconnect_stable_ms / 1000,
        )

    # -- control, from the supervisor's thread ---------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the listener to finish; returns at once (``join`` waits)."""
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

    # -- the loop, on the listener's thread -----------------------------------------------

    def _run(self) -> None:
        logs.bind_context(
            tenant=self.key.tenant, provider=self.key.provider_id, folder=self.key.folder
        )
        if self._stop.wait(self._start_delay_s):
            return
        failures = 0
        while not self._stop.is_set():
            self._connected_at = None
            hint_s: float | None = None
            try:
                self._set_state("connecting")
                self._connect_and_follow()
                break  # stopped cleanly
            except LeaseLost:
                logger.warning("lease lost; listener stops")
                self._set_state("stopped")
                return
            except ServerThrottled as exc:
                hint_s = exc.retry_after_s
                self._record_failure("throttled", exc)
            except TransientError as exc:
                self._record_failure("transient", exc)
            except PermanentError as exc:
                self._record_failure("permanent", exc)
                self._set_state("parked")
                self._stop.wait(self._policy.max_s)
                continue
            except Exception as exc:
                logger.exception("listener failed unexpectedly")
                self._record_failure("unexpected", exc)
                hint_s = self._policy.max_s / 2
            finally:
                self._close_session()
            if self._stop.is_set():
                break
            connected_at = self._connected_at
            connected_for = time.monotonic() - connected_at if connected_at else 0.0
            failures = failures_after_disconnect(self._policy, failures, connected_for)
            delay = next_delay_s(
                self._policy, failures, random_unit=self._context.rng.random(), hint_s=hint_s
            )
            self._set_state("backoff")
            logger.info("reconnecting in %.1fs (failure %d in a row)", delay, failures)
            self._stop.wait(delay)
        self._set_state("stopped")

    def _connect_and_follow(self) -> None:
        context = self._context
        login = context.load_login(self.provider)
        endpoint = self.provider.endpoint
        options = ConnectOptions(
            timeout_s=(endpoint.timeout_ms or self._settings.connection_timeout_ms) / 1000,
            keepalive=(
                endpoint.socket_keepalive
                if endpoint.socket_keepalive is not None
                else self._settings.socket_keepalive
            ),
            verify_tls=self._settings.tls_reject_unauthorized,
        )
        session = ImapSession.open(endpoint, login, options)
        self._session = session
        if self._stop.is_set():
            return
        self._connected_at = time.monotonic()
        status = session.examine(self.key.folder)
        logger.info("folder opened: uidvalidity=%d exists=%d", status.uid_validity, status.exists)
        cursor = self._ensure_cursor(session, status.uid_validity, status.uid_next)
        context.providers.save_status(
            self.provider,
            status="connected",
            error=None,
            fence=self.fence,
            capabilities=session.capabilities,
            synced=True,
        )
        idle = session.has_capability("IDLE")
        while not self._stop.is_set():
            session.take_new_mail_hint()  # the SEARCH below sees whatever it announced
            cursor = self._catch_up(session, cursor)
            if self._stop.is_set():
                break
            if session.take_new_mail_hint():
                continue  # mail arrived during the catch-up: the server will not repeat it
            self._set_state("idle" if idle else "polling")
            if idle:
                reissue_s = self._settings.idle_reissue_ms / 1000
                if not session.wait_for_changes(self._stop, reissue_s):
                    if self._stop.is_set():
                        break
                    session.noop()  # liveness check and reconciliation before re-IDLE
            else:
                if self._stop.wait(self._settings.poll_interval_ms / 1000):
                    break
                session.noop()
            self._set_state("syncing")

    def _ensure_cursor(
        self, session: ImapSession, uid_validity: int, uid_next: int | None
    ) -> FolderCursor:
        plan = plan_sync(self._context.cursors.load_cursor(self.key), uid_validity)
        match plan:
            case CatchUp(after_uid):
                return FolderCursor(uid_validity, after_uid)
            case Rebaseline(reason):
                baseline = plan_baseline(
                    session.search_all_uids(),
                    window=self._settings.max_emails_per_sync,
                    uid_validity=uid_validity,
                    uid_next=uid_next,
                )
                logger.info("re-baselining (%s): cursor at uid %d", reason, baseline.last_uid)
                self._context.cursors.save_baseline(self.key, baseline, self.fence)
                return baseline
        raise AssertionError(plan)  # pragma: no cover - exhaustive match

    def _catch_up(self, session: ImapSession, cursor: FolderCursor) -> FolderCursor:
        uids = session.search_uids_after(cursor.last_uid)
        for batch in split_batches(uids, self._settings.fetch_batch_size):
            if self._stop.is_set():
                break
            entries = self._build_entries(session, cursor.uid_validity, batch)
            self._publish(cursor.uid_validity, entries)
            cursor = FolderCursor(cursor.uid_validity, batch[-1])
            self._save_cursor(cursor)
        return cursor

    def _build_entries(
        self, session: ImapSession, uid_validity: int, uids: Sequence[int]
    ) -> list[StreamEntry]:
        fetched = {message.uid: message for message in session.fetch_messages(uids)}
        for _ in range(UNFETCHABLE_TRIES - 1):
            missing = [uid for uid in uids if uid not in fetched]
            if not missing or self._stop.wait(UNFETCHABLE_RETRY_S):
                break
            fetched.update({m.uid: m for m in session.fetch_messages(missing)})
        entries = []
        for uid in uids:
            message = fetched.get(uid)
            if message is None:
                entries.append(
                    self._dead_letter(
                        uid_validity,
                        uid,
                        "unfetchable",
                        "listed by SEARCH but FETCH returned nothing",
                        None,
                    )
                )
                continue
            entries.append(self._entry_for(uid_validity, message))
        return entries

    def _entry_for(self, uid_validity: int, message: FetchedMessage) -> StreamEntry:
        try:
            parsed = parse_message(message.raw)
            meta = MessageMeta(
                tenant=self.key.tenant,
                provider_id=self.key.provider_id,
                provider_type=self.provider.provider_type,
                folder=self.key.folder,
                uid=message.uid,
                uid_validity=uid_validity,
                internal_date=message.internal_date,
                size=message.size,
                flags=message.flags,
            )
            email_data = build_email_data(parsed, meta, sha256_hex(message.raw))
            fields = build_event_fields(
                email_data=email_data,
                key=self.key,
                event_id=event_id_for(self.key, uid_validity, message.uid),
                published_at=self._context.clock(),
                execution_id=choose_execution_id(
                    self.key,
                    by_tenant=self._settings.event_channel_by_tenant,
                    random_uuid=uuid.uuid4(),
                ),
            )
            return StreamEntry(message.uid, fields)
        except MessageUnparseable as exc:
            return self._dead_letter(
                uid_validity, message.uid, "unparseable", str(exc), message.raw
            )
        except Exception as exc:  # a parser bug must not block the folder
            logger.exception("building the event for uid %d failed", message.uid)
            return self._dead_letter(
                uid_validity,
                message.uid,
                "event_build_failed",
                f"{type(exc).__name__}: {exc}",
                message.raw,
            )

    def _dead_letter(
        self, uid_validity: int, uid: int, reason: str, detail: str, raw: bytes | None
    ) -> StreamEntry:
        logger.warning("uid %d goes to the dead-letter stream: %s", uid, reason)
        fields = build_dead_letter_fields(
            key=self.key,
            uid_validity=uid_validity,
            uid=uid,
            reason=reason,
            detail=detail,
            raw=raw,
            failed_at=self._context.clock(),
        )
        return StreamEntry(uid, fields, dead_letter=True)

    @_retry_writes
    def _publish(self, uid_validity: int, entries: list[StreamEntry]) -> None:
        ids = self._context.publisher.publish_folder_batch(self.key, uid_validity, entries)
        for entry, stream_id in zip(entries, ids, strict=True):
            if stream_id is None:
                logger.info("uid %d was already published; skipped", entry.uid)
                continue
            name = (
                "email_service_dead_letters_total"
                if entry.dead_letter
                else "email_service_events_published_total"
            )
            self._context.metrics.add(name)
            logger.info(
                "uid %d published as %s (event %s)", entry.uid, stream_id, entry.fields["event_id"]
            )

    @_retry_writes
    def _save_cursor(self, cursor: FolderCursor) -> None:
        self._context.cursors.advance_cursor(self.key, cursor, self.fence)

    # -- bookkeeping ----------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state

    def _record_failure(self, kind: str, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, EmailServiceError) else type(exc).__name__
        logger.warning("listener %s error: %s", kind, message)
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
