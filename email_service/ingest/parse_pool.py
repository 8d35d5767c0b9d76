"""Turning fetched messages into stream entries, on other cores (shell).

Parsing is most of a backlog's cost (py-spy: ~66 % of a listener's time, against ~26 %
fetching), so a listener hands each batch to ``EntryBuilder`` and fetches the next batch
while the previous one is parsed (``folder_sync.catch_up``). With
``EMAIL_SERVICE_PARSE_PROCESSES`` above 0 the batches are parsed in a pool of that many
processes (started on first use, by forkserver: forking a process that runs a thousand
threads is unsafe); with 0 they are parsed inline, on the listener's thread.

``build_entry`` never raises (a message it cannot turn into an event becomes a dead
letter), so a batch fails only if a pool process dies (a crash or the OOM killer); then
the pool is replaced and that batch is parsed inline, so nothing is skipped.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime

from email_service.imap.fetched import Fetched
from email_service.ingest.entry import IngestTarget, build_entry
from email_service.publish.events import StreamEntry

logger = logging.getLogger(__name__)


def build_entries(
    messages: Sequence[Fetched], target: IngestTarget, now: datetime
) -> list[StreamEntry]:
    """The entry of each message, in order (runs in a pool process or inline)."""
    return [build_entry(m, target, now=now, random_uuid=uuid.uuid4()) for m in messages]


class PendingEntries:
    """Entries being built; ``result`` waits for them (and falls back inline if need be)."""

    def __init__(
        self,
        builder: EntryBuilder,
        future: Future[list[StreamEntry]] | None,
        job: tuple[Sequence[Fetched], IngestTarget, datetime],
    ) -> None:
        self._builder = builder
        self._future = future
        self._job = job

    def result(self) -> list[StreamEntry]:
        if self._future is not None:
            try:
                return self._future.result()
            except BrokenProcessPool:
                logger.warning("a parse process died; parsing this batch here instead")
                self._builder.replace_broken_pool()
        return build_entries(*self._job)


class EntryBuilder:
    """Builds entries in a process pool of ``processes`` (0: inline). Thread-safe."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(
        self, messages: Sequence[Fetched], target: IngestTarget, now: datetime
    ) -> PendingEntries:
        job = (list(messages), target, now)
        if self._processes <= 0 or not messages:
            return PendingEntries(self, None, job)
        try:
            future = self._get_pool().submit(build_entries, *job)
        except BrokenProcessPool:
            logger.warning("the parse pool is broken; starting a new one")
            self.replace_broken_pool()
            return PendingEntries(self, None, job)
        except RuntimeError:  # shut down while the worker stops
            return PendingEntries(self, None, job)
        return PendingEntries(self, future, job)

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                self._pool = ProcessPoolExecutor(self._processes, mp_context=context)
            return self._pool

    def replace_broken_pool(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
