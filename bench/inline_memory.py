"""Bytes per entry and Redis memory per 1,000 corpus events, inline content off/attachments/all.

Builds each corpus message's entry as the worker does (``ingest.entry.build_entry``), XADDs 1,000
of them (the corpus cycled) to a scratch stream of the local Redis, and reads ``MEMORY
USAGE`` of that stream. ``python -m bench.inline_memory``.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis

from email_service.imap.fetched import FetchedMessage
from email_service.ingest.entry import IngestTarget, build_entry
from email_service.ingest.limits import entry_bytes
from email_service.model import FolderKey
from email_service.settings import IngressLimits

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"
TENANT = "00000000-0000-4000-8000-000000000001"
EVENTS = 1000


def measure(mode: str, client: redis.Redis[bytes]) -> dict[str, float]:
    raws = [p.read_bytes() for p in sorted(CORPUS.iterdir()) if p.suffix in (".eml", ".bin")]
    target = IngestTarget(
        FolderKey(TENANT, "bench", "INBOX"), "imap", 1, IngressLimits(inline_content=mode)
    )
    now = datetime.now(UTC)
    stream = f"bench:inline:{uuid.uuid4()}"
    sizes = []
    try:
        for n in range(EVENTS):
            raw = raws[n % len(raws)]
            fetched = FetchedMessage(uid=n + 1, raw=raw, internal_date=now, flags=(), size=len(raw))
            entry = build_entry(fetched, target, now=now, random_uuid=uuid.uuid4())
            sizes.append(entry_bytes(entry.fields))
            client.xadd(stream, entry.fields)
        memory = int(client.memory_usage(stream, samples=0) or 0)
    finally:
        client.delete(stream)
    return {
        "mode": mode,
        "bytes_per_entry": round(sum(sizes) / len(sizes)),
        "redis_bytes_per_1000_events": memory * 1000 // EVENTS,
    }


def main() -> None:
    logging.disable(logging.WARNING)  # the corpus's dead letters are expected
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for mode in ("off", "attachments", "all"):
        print(json.dumps(measure(mode, client)))


if __name__ == "__main__":
    main()
