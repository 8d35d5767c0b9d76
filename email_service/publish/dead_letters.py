"""The dead-letter stream: list, read, delete and replay its entries (shell).

Replaying a dead letter turns its message into the event the listener would have published
(``ingest.entry.build_entry``, with today's settings and code) and, in one Redis script, adds the
event and removes the dead letter, once per event id (``publisher.replay_dead_letter``). The
message comes from the entry (``rawBase64``) or, for one too large to keep or never
fetched, from the server again by UID: with the provider's stored credentials, and only
while the folder's UIDVALIDITY is the one in the entry (after a change the UID names another
message, or none, and the replay says so instead of guessing).

A replay that still fails (the cause is not fixed) leaves the dead letter where it is.

Only our own entries are ever read, changed or counted (``publish.events.is_our_dead_letter``): if
the stream is shared by mistake, or when moving old dead letters of ours out of the
consumer's ``<stream>:dlq`` (``move_from``), the consumer's entries are left as they are.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

import redis

from email_service.errors import EmailServiceError, ReplayImpossible, TransientError
from email_service.imap.fetched import Fetched, FetchedMessage
from email_service.imap.session import ConnectOptions, ImapSession
from email_service.ingest.entry import IngestTarget, build_entry
from email_service.ingest.limits import plan_fetch_batches
from email_service.model import ProviderConfig
from email_service.publish.events import DEAD_LETTER_PRODUCER, DeadLetter, is_our_dead_letter
from email_service.publish.publisher import (
    EventPublisher,
    delete_entry,
    move_entry,
    read_entries,
    read_entry,
)
from email_service.settings import Settings
from email_service.sync.fetching import fetcher_for

if TYPE_CHECKING:
    from email_service.worker.process import WorkerParts

logger = logging.getLogger(__name__)

#: Entries read per XRANGE while listing.
PAGE_SIZE = 200

#: ``ReplayOutcome.status`` values.
PUBLISHED = "published"  #: the event was added and the dead letter removed
ALREADY = "already"  #: replayed before; the dead letter (a stale copy) was removed
MISSING = "missing"  #: no such dead letter
FAILED = "failed"  #: not replayed; the dead letter stays


@dataclass(frozen=True)
class ReplayOutcome:
    entry_id: str
    status: str
    detail: str
    stream_id: str | None = None


class DeadLetterQueue:
    """Reads and replays one dead-letter stream.

    ``build_parts`` makes the worker's parts (database, secrets) when a replay first has to
    fetch a message from its server; listing and replaying stored messages need only Redis.
    """

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis[bytes],
        *,
        build_parts: Callable[[Settings], WorkerParts] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._client = client
        self._stream = settings.streams.dlq_stream
        self._publisher = EventPublisher(
            client,
            stream=settings.streams.event_stream,
            dlq_stream=settings.streams.dlq_stream,
            mark_ttl_s=settings.streams.published_mark_ttl_s,
        )
        self._limits = settings.ingest
        self._build_parts = build_parts
        self._parts: WorkerParts | None = None
        self._sessions: dict[tuple[str, str], ImapSession] = {}
        self._clock = clock

    def __enter__(self) -> DeadLetterQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
        if self._parts is not None:
            self._parts.engine.dispose()
            self._parts.listener_context.builder.close()
            self._parts.listener_context.publisher.client.close()

    # -- reading --------------------------------------------------------------------------

    def iter_dead_letters(
        self, *, tenant: str | None = None, provider_id: str | None = None
    ) -> Iterator[DeadLetter]:
        """Every dead letter, oldest first, optionally of one tenant or provider."""
        for entry_id, fields in self._our_entries(self._stream):
            try:
                dead = DeadLetter.from_fields(entry_id, fields)
            except ValueError:
                logger.warning("dead letter %s is malformed; skipped", entry_id)
                continue
            if tenant is not None and dead.key.tenant != tenant:
                continue
            if provider_id is not None and dead.key.provider_id != provider_id:
                continue
            yield dead

    def _our_entries(self, stream: str) -> Iterator[tuple[str, dict[str, str]]]:
        after = "-"
        while True:
            page = read_entries(self._client, stream, after_id=after, count=PAGE_SIZE)
            yield from ((i, fields) for i, fields in page if is_our_dead_letter(fields))
            if len(page) < PAGE_SIZE:
                return
            after = page[-1][0]

    def find(self, entry_id: str) -> DeadLetter | None:
        """Our dead letter ``entry_id``; None when there is none (or it is not ours)."""
        fields = read_entry(self._client, self._stream, entry_id)
        if fields is None or not is_our_dead_letter(fields):
            return None
        return DeadLetter.from_fields(entry_id, fields)

    def delete(self, entry_id: str) -> bool:
        """Remove our dead letter ``entry_id``; False when there is none of ours."""
        fields = read_entry(self._client, self._stream, entry_id)
        if fields is None or not is_our_dead_letter(fields):
            return False
        return delete_entry(self._client, self._stream, entry_id)

    def move_from(self, source: str) -> int:
        """Move our dead letters from ``source`` (the old default ``<stream>:dlq``, which the
        consumer shares) to our stream, oldest first; the consumer's entries stay. Each
        entry is added here and removed there in one step. Returns how many moved."""
        if source == self._stream:
            return 0
        moved = 0
        for entry_id, _fields in list(self._our_entries(source)):
            if move_entry(
                self._client, source, entry_id, self._stream, {"producer": DEAD_LETTER_PRODUCER}
            ):
                moved += 1
        return moved

    # -- replay ---------------------------------------------------------------------------

    def replay(self, entry_id: str) -> ReplayOutcome:
        """Replay one dead letter; never raises for a problem of that message."""
        try:
            dead = self.find(entry_id)
        except ValueError as exc:
            return ReplayOutcome(entry_id, FAILED, str(exc))
        if dead is None:
            return ReplayOutcome(entry_id, MISSING, "no such dead letter (replayed or deleted?)")
        try:
            fetched = self._message_of(dead)
        except TransientError as exc:
            self._drop_session(dead)  # the connection may be broken: a fresh one next time
            return ReplayOutcome(entry_id, FAILED, str(exc))
        except EmailServiceError as exc:
            return ReplayOutcome(entry_id, FAILED, str(exc))
        target = IngestTarget(
            key=dead.key,
            provider_type=dead.provider_type,
            uid_validity=dead.uid_validity,
            limits=self._limits,
            channel_by_tenant=self._settings.streams.event_channel_by_tenant,
        )
        entry = build_entry(fetched, target, now=self._clock(), random_uuid=uuid.uuid4())
        if entry.dead_letter:
            detail = f"still fails: {entry.fields['reason']}: {entry.fields['detail']}"
            return ReplayOutcome(entry_id, FAILED, detail)
        result = self._publisher.replay_dead_letter(dead.key, entry_id, entry.fields)
        detail = f"event {entry.fields['event_id']}"
        return ReplayOutcome(entry_id, result.outcome, detail, result.stream_id)

    def _message_of(self, dead: DeadLetter) -> Fetched:
        stored = dead.message
        if stored.raw is not None:
            return FetchedMessage(
                uid=dead.uid,
                raw=stored.raw,
                internal_date=stored.internal_date,
                flags=stored.flags,
                size=stored.size if stored.size is not None else len(stored.raw),
                gmail_msgid=stored.gmail_msgid,
            )
        return self._refetch(dead)

    def _refetch(self, dead: DeadLetter) -> Fetched:
        session = self._session_for(dead)
        status = session.examine(dead.key.folder)
        if status.uid_validity != dead.uid_validity:
            raise ReplayImpossible(
                f"the UIDVALIDITY of {dead.key.folder!r} changed from {dead.uid_validity} to "
                f"{status.uid_validity}: UID {dead.uid} no longer names this message, so it "
                "cannot be fetched again. The listener re-published the folder's newest "
                "messages after the change; find this one in the mailbox by hand if needed, "
                "then `email-service dlq delete` the entry"
            )
        size = session.fetch_sizes([dead.uid]).get(dead.uid)
        if size is None:
            if dead.uid not in session.search_uids_after(dead.uid - 1):
                raise ReplayImpossible(
                    f"UID {dead.uid} is no longer in {dead.key.folder!r} (expunged): "
                    "nothing to replay"
                )
            raise ReplayImpossible(f"the server still returns nothing for UID {dead.uid}")
        (batch,) = plan_fetch_batches([(dead.uid, size)], self._limits)  # as the listener does
        fetch = fetcher_for(session, batch.mode, self._limits)
        found = {} if fetch is None else fetch(batch.uids)
        if dead.uid not in found:
            raise ReplayImpossible(f"the server still returns nothing for UID {dead.uid}")
        return found[dead.uid]

    def _session_for(self, dead: DeadLetter) -> ImapSession:
        ref = (dead.key.tenant, dead.key.provider_id)
        session = self._sessions.get(ref)
        if session is None:
            parts = self._worker_parts()
            provider = parts.providers.find_provider(dead.key.provider_id, dead.key.tenant)
            session = self._open(provider, parts)
            self._sessions[ref] = session
        return session

    def _drop_session(self, dead: DeadLetter) -> None:
        session = self._sessions.pop((dead.key.tenant, dead.key.provider_id), None)
        if session is not None:
            session.close()

    def _worker_parts(self) -> WorkerParts:
        if self._parts is None:
            if self._build_parts is None:
                raise ReplayImpossible("the message is not stored and cannot be fetched here")
            self._parts = self._build_parts(self._settings)
        return self._parts

    def _open(self, provider: ProviderConfig, parts: WorkerParts) -> ImapSession:
        options = ConnectOptions.for_endpoint(provider.endpoint, self._settings.imap)
        login = parts.listener_context.load_login(provider)
        return ImapSession.open(provider.endpoint, login, options)
