"""Parsing in a process pool gives the entries inline parsing gives, and survives a crash."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from email_service.imap.fetched import FetchedMessage
from email_service.ingest.entry import IngestTarget
from email_service.ingest.parse_pool import EntryBuilder, build_entries
from email_service.model import FolderKey
from email_service.settings import IngressLimits
from tests.helpers import TENANT_A, make_message

TARGET = IngestTarget(FolderKey(TENANT_A, "p1", "INBOX"), "imap", 7, IngressLimits())
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def messages(count: int) -> list[FetchedMessage]:
    found = []
    for uid in range(1, count + 1):
        raw = make_message(f"subject {uid}") if uid % 3 else b"\xff\xfe not mail \x00"
        found.append(FetchedMessage(uid, raw, NOW, (), len(raw)))
    return found


def comparable(entry: object) -> tuple[int, bool, str]:
    fields = dict(entry.fields)  # type: ignore[attr-defined]
    fields.pop("execution_id", None)  # a new UUID each time
    return entry.uid, entry.dead_letter, json.dumps(fields, sort_keys=True)  # type: ignore[attr-defined]


@pytest.fixture
def pool() -> Iterator[EntryBuilder]:
    builder = EntryBuilder(1)
    yield builder
    builder.close()


def test_the_pool_builds_what_inline_parsing_builds_in_order(pool: EntryBuilder) -> None:
    batch = messages(30)
    pooled = pool.submit(batch, TARGET, NOW).result()
    inline = build_entries(batch, TARGET, NOW)
    assert [comparable(e) for e in pooled] == [comparable(e) for e in inline]
    assert [e.uid for e in pooled] == list(range(1, 31))
    assert any(e.dead_letter for e in pooled) and any(not e.dead_letter for e in pooled)


def test_a_dead_parse_process_costs_nothing_but_time(pool: EntryBuilder) -> None:
    pool.submit(messages(1), TARGET, NOW).result()  # the pool is up
    processes = list(pool._get_pool()._processes)  # type: ignore[union-attr]
    assert processes
    for pid in processes:
        os.kill(pid, signal.SIGKILL)
    entries = pool.submit(messages(5), TARGET, NOW).result()
    assert [e.uid for e in entries] == [1, 2, 3, 4, 5]
    again = pool.submit(messages(3), TARGET, NOW).result()  # a new pool
    assert [e.uid for e in again] == [1, 2, 3]


def test_zero_processes_parse_inline() -> None:
    builder = EntryBuilder(0)
    assert [e.uid for e in builder.submit(messages(2), TARGET, NOW).result()] == [1, 2]
    assert builder._pool is None
    builder.close()
