"""Publishes one folder's new messages and moves its cursor (shell).

``FolderSync`` is what every way of following a folder shares: the IDLE listener and the
STATUS poller both call ``open_folder`` after EXAMINE and ``catch_up`` whenever the folder
may have changed. The cursor moves only after the events of its UIDs are in Redis; the
publisher skips UIDs already published, so a crash between the two publishes nothing twice.

Catching up fetches the sizes of up to ``SIZES_PER_FETCH`` UIDs above the cursor, plans
batches by size (``ingest.limits.plan_fetch_batches``; fetched by ``sync.fetching``), turns
each message into an event or a dead letter (``ingest.entry``), publishes, then moves the
cursor to the batch's last UID (docs/architecture.md, "One folder, from IMAP to the stream").

No message can stop the folder:

- A UID the server lists but does not return (some announce a message before it can be
  fetched) is asked again ``UNFETCHABLE_TRIES`` times, ``UNFETCHABLE_RETRY_S`` apart; one
  that SEARCH no longer lists was expunged and is skipped; the rest are dead letters.
- A FETCH that fails the command or the connection (Dovecot answers an unreadable message
  file with ``BYE``) counts against each UID in it, across reconnects. UIDs with a count are
  fetched alone from then on; a UID whose own fetch failed ``FETCH_FAILURE_LIMIT`` times is
  a dead letter without another try.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from email_service.errors import (
    ConnectionLost,
    FolderMissing,
    ImapCommandFailed,
    PublishFailed,
    StorageUnavailable,
)
from email_service.imap.fetched import Fetched
from email_service.imap.session import FolderStatus, ImapSession
from email_service.ingest.entry import IngestTarget, unfetchable_entry
from email_service.ingest.limits import FetchBatch, entry_bytes, plan_fetch_batches
from email_service.ingest.parse_pool import PendingEntries
from email_service.model import FolderCursor, FolderKey, ProviderConfig
from email_service.publish.backpressure import Pause
from email_service.publish.events import StreamEntry
from email_service.sync.context import ListenerContext
from email_service.sync.fetching import fetcher_for
from email_service.sync.folder_check import check_search
from email_service.sync.plan import CatchUp, Rebaseline, plan_baseline, plan_sync, split_batches

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Tries for a UID that SEARCH listed but FETCH did not return (some servers announce a
#: message before it can be fetched); after that it goes to the dead-letter stream.
UNFETCHABLE_TRIES = 3
#: Seconds between those tries.
UNFETCHABLE_RETRY_S = 0.5
#: Failed fetches (command refused or connection lost) of one UID on its own before it is a
#: dead letter: a transient fault rarely hits the same message three times in a row.
FETCH_FAILURE_LIMIT = 3
#: UIDs whose sizes are asked in one command (a UID set of this many fits any server's
#: command line).
SIZES_PER_FETCH = 500
#: Fetched batches being parsed while the next one is fetched (a few MB each at most).
BATCHES_IN_FLIGHT = 2
#: Tries of one publish or cursor write before the caller reconnects and starts over.
WRITE_TRIES = 3
#: A folder found missing when verified may be in the middle of being recreated (DELETE,
#: then CREATE): it is looked for this many more times, this far apart, before it counts
#: as missing (which parks the listener for the longest backoff).
MISSING_RETRIES = 3
MISSING_RETRY_S = 0.5

_retry_writes = retry(
    retry=retry_if_exception_type((PublishFailed, StorageUnavailable)),
    stop=stop_after_attempt(WRITE_TRIES),
    wait=wait_exponential(multiplier=0.2, max=2),
    reraise=True,
)


@dataclass(frozen=True)
class _Building:
    """A batch fetched and handed to the builder, with the dead letters of UIDs not had."""

    batch: FetchBatch
    pending: PendingEntries
    missing: dict[int, StreamEntry]


@dataclass
class FetchFailures:
    """UIDs whose fetch failed, how often, and the last error; kept across reconnects."""

    counts: dict[int, int] = field(default_factory=dict)
    last_error: dict[int, str] = field(default_factory=dict)

    def record(self, uids: Sequence[int], error: str) -> None:
        for uid in uids:
            self.counts[uid] = self.counts.get(uid, 0) + 1
            self.last_error[uid] = error

    def clear(self, uids: Sequence[int]) -> None:
        for uid in uids:
            self.counts.pop(uid, None)
            self.last_error.pop(uid, None)

    def given_up(self, uid: int) -> bool:
        return self.counts.get(uid, 0) >= FETCH_FAILURE_LIMIT

    def describe(self, uid: int) -> str:
        return (
            f"fetching it failed {self.counts.get(uid, 0)} times; "
            f"last: {self.last_error.get(uid, '')}"
        )


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
        self.limits = context.settings.ingest
        self.stop = stop
        self._failures = FetchFailures()

    def open_folder(self, session: ImapSession) -> tuple[FolderStatus, FolderCursor]:
        """EXAMINE the folder and return its status and the cursor to catch up from."""
        status = self._examine(session)
        logger.info("folder opened: uidvalidity=%d exists=%d", status.uid_validity, status.exists)
        return status, self.ensure_cursor(session, status.uid_validity, status.uid_next)

    def ensure_cursor(
        self,
        session: ImapSession,
        uid_validity: int,
        uid_next: int | None,
        *,
        noticed: str | None = None,
    ) -> FolderCursor:
        """The cursor to catch up from; a re-baselined one when the folder is not the
        cursor's (``noticed``: what made a connected listener look again, for the log)."""
        plan = plan_sync(self.context.cursors.load_cursor(self.key), uid_validity, uid_next)
        match plan:
            case CatchUp(after_uid):
                return FolderCursor(uid_validity, after_uid)
            case Rebaseline(reason):
                baseline = plan_baseline(
                    session.search_all_uids(),
                    window=self.settings.imap.max_emails_per_sync,
                    uid_validity=uid_validity,
                    uid_next=uid_next,
                )
                while_connected = f" while connected, noticed by: {noticed}" if noticed else ""
                logger.info(
                    "re-baselining (%s%s): cursor at uid %d",
                    reason,
                    while_connected,
                    baseline.last_uid,
                )
                self.context.cursors.save_baseline(self.key, baseline, self.fence)
                return baseline
        raise AssertionError(plan)  # pragma: no cover - exhaustive match

    def verify_folder(self, session: ImapSession, reason: str) -> FolderCursor:
        """EXAMINE the folder again and return the cursor for it: the same one while
        UIDVALIDITY and UIDNEXT still fit it, else a new baseline exactly as at open."""
        status = self._examine(session)
        logger.debug("folder verified (%s): uidvalidity=%d", reason, status.uid_validity)
        return self.ensure_cursor(session, status.uid_validity, status.uid_next, noticed=reason)

    def _examine(self, session: ImapSession) -> FolderStatus:
        """EXAMINE, looking again a few times for a folder that is missing: it may be in the
        middle of being recreated (DELETE, then CREATE; the session may have been ended
        for the DELETE)."""
        for attempt in range(MISSING_RETRIES + 1):
            try:
                return session.examine(self.key.folder)
            except FolderMissing:
                if attempt == MISSING_RETRIES or self.stop.wait(MISSING_RETRY_S):
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def catch_up(self, session: ImapSession, cursor: FolderCursor) -> FolderCursor:
        """Publish every UID above the cursor, in batches; return the new cursor.

        When the search does not fit the cursor (``sync.folder_check.check_search``: a UID below
        it, or fewer new UIDs than EXISTS announced), the folder is verified first, so mail
        of a recreated folder is never published under the old UIDVALIDITY.

        A pipeline: while up to ``BATCHES_IN_FLIGHT`` batches are being parsed
        (``EntryBuilder``, on other cores when configured), the next is fetched; batches are
        published, and the cursor moved, strictly in UID order.
        """
        announced = session.announced_since_search()
        found = session.search_uids_from(cursor.last_uid)
        suspicion = check_search(found, cursor.last_uid, announced)
        if suspicion is not None:
            cursor = self.verify_folder(session, suspicion)
            found = session.search_uids_from(cursor.last_uid)
        uids = [uid for uid in found if uid > cursor.last_uid]
        target = IngestTarget(
            key=self.key,
            provider_type=self.provider_type,
            uid_validity=cursor.uid_validity,
            limits=self.limits,
            channel_by_tenant=self.settings.streams.event_channel_by_tenant,
        )
        building: deque[_Building] = deque()
        for chunk in split_batches(uids, SIZES_PER_FETCH):
            if self.stop.is_set():
                break
            sizes = self._load_sizes(session, chunk)
            for batch in plan_fetch_batches(sizes, self.limits):
                if self.stop.is_set():
                    break
                fetched = self._fetch_batch(session, batch)
                if self.stop.is_set():  # a retry wait cut short: what is missing is not lost
                    break
                building.append(self._start_building(target, batch, fetched))
                if len(building) > BATCHES_IN_FLIGHT:
                    cursor = self._finish(building.popleft(), cursor)
        while building and not self.stop.is_set():
            cursor = self._finish(building.popleft(), cursor)
        if not self.stop.is_set():
            self._mark_synced()
        return cursor

    def _start_building(
        self, target: IngestTarget, batch: FetchBatch, fetched: dict[int, Fetched]
    ) -> _Building:
        present = [fetched[uid] for uid in batch.uids if uid in fetched]
        now = self.context.clock()
        missing = {}
        for uid in batch.uids:
            if uid not in fetched:
                detail = (
                    self._failures.describe(uid)
                    if self._failures.given_up(uid)
                    else "listed by SEARCH but FETCH returned nothing"
                )
                missing[uid] = unfetchable_entry(uid, target, detail, now=now)
        pending = self.context.builder.submit(present, target, now)
        return _Building(batch, pending, missing)

    def _finish(self, building: _Building, cursor: FolderCursor) -> FolderCursor:
        """Wait for a batch's entries, publish them in UID order, move the cursor."""
        built = {entry.uid: entry for entry in building.pending.result()}
        built.update(building.missing)
        entries = [built[uid] for uid in building.batch.uids]
        self._failures.clear(building.batch.uids)  # each has its entry now
        if not self._wait_for_room(entries):
            return cursor  # stopping: the batch is fetched again, the cursor is unmoved
        self._publish(cursor.uid_validity, entries)
        cursor = FolderCursor(cursor.uid_validity, building.batch.uids[-1])
        self._save_cursor(cursor)
        return cursor

    def _wait_for_room(self, entries: list[StreamEntry]) -> bool:
        """Hold the batch while Redis is above a water mark (``publish_gate``); False when
        stopping meanwhile. The provider's status says why while it is held."""
        gate = self.context.gate
        if gate is None:
            return True
        size = sum(entry_bytes(entry.fields) for entry in entries)

        def paused(pause: Pause) -> None:
            self.context.providers.save_status(
                self.provider,
                status="publishing_paused",
                error=f"publishing paused: {pause.detail}",
                fence=self.fence,
            )

        def resumed() -> None:
            self.context.providers.save_status(
                self.provider, status="connected", error=None, fence=self.fence
            )

        return gate.wait_for_room(size, self.stop, paused, resumed)

    @_retry_writes
    def _mark_synced(self) -> None:
        """``last_sync_at`` says when the folder was last known to be fully published."""
        self.context.providers.mark_synced(self.provider, self.fence)

    def _fetch_isolated(
        self, uids: Sequence[int], fetch: Callable[[Sequence[int]], Mapping[int, T]]
    ) -> dict[int, T]:
        """``fetch`` the ``uids``, each UID that failed before on its own; a failure counts
        against every UID of the failed command and is raised. UIDs given up are skipped.
        Counts are cleared once a UID has its entry (``_build_entries``), not on a success
        here: a message whose size fetches fine can still break the fetch of its body."""
        suspects = [uid for uid in uids if uid in self._failures.counts]
        fresh = [uid for uid in uids if uid not in self._failures.counts]
        found: dict[int, T] = {}
        for group in ([fresh] if fresh else []) + [[uid] for uid in suspects]:
            if self._failures.given_up(group[0]):
                continue
            try:
                found.update(fetch(group))
            except (ConnectionLost, ImapCommandFailed) as exc:
                if not self.stop.is_set():  # a stop cuts the connection: not the message's fault
                    self._failures.record(group, str(exc))
                    logger.warning("fetching %d uids from %d failed: %s", len(group), group[0], exc)
                raise
        return found

    def _fetch_with_retries(
        self, uids: Sequence[int], fetch: Callable[[Sequence[int]], Mapping[int, T]]
    ) -> dict[int, T]:
        """``_fetch_isolated``, asking again for UIDs the server left out."""
        found = self._fetch_isolated(uids, fetch)
        for _ in range(UNFETCHABLE_TRIES - 1):
            missing = [u for u in uids if u not in found and not self._failures.given_up(u)]
            if not missing or self.stop.wait(UNFETCHABLE_RETRY_S):
                break
            found.update(self._fetch_isolated(missing, fetch))
        return found

    def _load_sizes(
        self, session: ImapSession, uids: Sequence[int]
    ) -> list[tuple[int, int | None]]:
        """``(uid, RFC822.SIZE or None)`` in order, without the UIDs expunged meanwhile."""
        sizes = self._fetch_with_retries(uids, session.fetch_sizes)
        missing = [uid for uid in uids if uid not in sizes]
        gone: set[int] = set()
        if missing:
            listed = set(session.search_uids_after(missing[0] - 1))
            gone = {uid for uid in missing if uid not in listed}
            if gone:
                logger.info("%d uids were expunged before they could be fetched", len(gone))
        return [(uid, sizes.get(uid)) for uid in uids if uid not in gone]

    def _fetch_batch(self, session: ImapSession, batch: FetchBatch) -> dict[int, Fetched]:
        fetch = fetcher_for(session, batch.mode, self.limits)
        return {} if fetch is None else self._fetch_with_retries(batch.uids, fetch)

    @_retry_writes
    def _publish(self, uid_validity: int, entries: list[StreamEntry]) -> None:
        results = self.context.publisher.publish_folder_batch(self.key, uid_validity, entries)
        metrics = self.context.metrics
        for entry, result in zip(entries, results, strict=True):
            event_id = entry.fields["event_id"]
            if result.copy_of is not None:
                metrics.add("email_service_gmail_copies_total")
                logger.info("uid %d: Gmail copy of event %s; recorded", entry.uid, result.copy_of)
                continue
            if result.stream_id is None:
                logger.info("uid %d was already published; skipped", entry.uid)
                continue
            if entry.dead_letter:
                metrics.add("email_service_dead_letters_total", reason=entry.fields["reason"])
                if entry.violation is not None:
                    metrics.add("email_service_contract_violations_total", field=entry.violation)
            else:
                metrics.add("email_service_events_published_total")
                for reason in entry.skip_reasons:
                    metrics.add("email_service_ingress_skips_total", reason=reason)
            logger.info("uid %d published as %s (event %s)", entry.uid, result.stream_id, event_id)

    @_retry_writes
    def _save_cursor(self, cursor: FolderCursor) -> None:
        self.context.cursors.advance_cursor(self.key, cursor, self.fence)
