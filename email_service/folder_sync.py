"""Publishes one folder's new messages and moves its cursor (shell).

``FolderSync`` is what every way of following a folder shares: the IDLE listener and the
STATUS poller both call ``open_folder`` after EXAMINE and ``catch_up`` whenever the folder
may have changed. The cursor moves only after the events of its UIDs are in Redis; the
publisher skips UIDs already published, so a crash between the two publishes nothing twice.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from email_service.email_data import MessageMeta, build_email_data, sha256_hex
from email_service.errors import MessageUnparseable, PublishFailed, StorageUnavailable
from email_service.events import (
    build_dead_letter_fields,
    build_event_fields,
    choose_execution_id,
    event_id_for,
)
from email_service.imap_session import FetchedMessage, FolderStatus, ImapSession, PasswordLogin
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
#: Tries of one publish or cursor write before the caller reconnects and starts over.
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


class FolderSync:
    """Moves one folder's messages above its cursor to the stream."""

    def __init__(
        self,
        provider: ProviderConfig,
        folder: str,
        fence: int,
        context: ListenerContext,
        stop: threading.Event,
    ) -> None:
        self.provider = provider
        self.key = FolderKey(provider.tenant, provider.id, folder)
        self.provider_type = provider.provider_type
        self.fence = fence
        self.context = context
        self.settings = context.settings
        self.stop = stop

    def open_folder(self, session: ImapSession) -> tuple[FolderStatus, FolderCursor]:
        """EXAMINE the folder and return its status and the cursor to catch up from."""
        status = session.examine(self.key.folder)
        logger.info("folder opened: uidvalidity=%d exists=%d", status.uid_validity, status.exists)
        return status, self.ensure_cursor(session, status.uid_validity, status.uid_next)

    def ensure_cursor(
        self, session: ImapSession, uid_validity: int, uid_next: int | None
    ) -> FolderCursor:
        plan = plan_sync(self.context.cursors.load_cursor(self.key), uid_validity)
        match plan:
            case CatchUp(after_uid):
                return FolderCursor(uid_validity, after_uid)
            case Rebaseline(reason):
                baseline = plan_baseline(
                    session.search_all_uids(),
                    window=self.settings.max_emails_per_sync,
                    uid_validity=uid_validity,
                    uid_next=uid_next,
                )
                logger.info("re-baselining (%s): cursor at uid %d", reason, baseline.last_uid)
                self.context.cursors.save_baseline(self.key, baseline, self.fence)
                return baseline
        raise AssertionError(plan)  # pragma: no cover - exhaustive match

    def catch_up(self, session: ImapSession, cursor: FolderCursor) -> FolderCursor:
        uids = session.search_uids_after(cursor.last_uid)
        for batch in split_batches(uids, self.settings.fetch_batch_size):
            if self.stop.is_set():
                break
            entries = self._build_entries(session, cursor.uid_validity, batch)
            self._publish(cursor.uid_validity, entries)
            cursor = FolderCursor(cursor.uid_validity, batch[-1])
            self._save_cursor(cursor)
        if not self.stop.is_set():
            self._mark_synced()
        return cursor

    @_retry_writes
    def _mark_synced(self) -> None:
        """``last_sync_at`` says when the folder was last known to be fully published."""
        self.context.providers.mark_synced(self.provider, self.fence)

    def _build_entries(
        self, session: ImapSession, uid_validity: int, uids: Sequence[int]
    ) -> list[StreamEntry]:
        fetched = {message.uid: message for message in session.fetch_messages(uids)}
        for _ in range(UNFETCHABLE_TRIES - 1):
            missing = [uid for uid in uids if uid not in fetched]
            if not missing or self.stop.wait(UNFETCHABLE_RETRY_S):
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
                provider_type=self.provider_type,
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
                published_at=self.context.clock(),
                execution_id=choose_execution_id(
                    self.key,
                    by_tenant=self.settings.event_channel_by_tenant,
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
            failed_at=self.context.clock(),
        )
        return StreamEntry(uid, fields, dead_letter=True)

    @_retry_writes
    def _publish(self, uid_validity: int, entries: list[StreamEntry]) -> None:
        ids = self.context.publisher.publish_folder_batch(self.key, uid_validity, entries)
        for entry, stream_id in zip(entries, ids, strict=True):
            if stream_id is None:
                logger.info("uid %d was already published; skipped", entry.uid)
                continue
            name = (
                "email_service_dead_letters_total"
                if entry.dead_letter
                else "email_service_events_published_total"
            )
            self.context.metrics.add(name)
            logger.info(
                "uid %d published as %s (event %s)", entry.uid, stream_id, entry.fields["event_id"]
            )

    @_retry_writes
    def _save_cursor(self, cursor: FolderCursor) -> None:
        self.context.cursors.advance_cursor(self.key, cursor, self.fence)
