"""Idempotent publishing against real Redis."""

from __future__ import annotations

import pytest
import redis

from email_service.model import FolderKey
from email_service.publisher import EventPublisher, StreamEntry
from email_service.redis_keys import provider_stats_key, published_mark_key
from tests.helpers import stream_events, unique

pytestmark = pytest.mark.integration

KEY = FolderKey(unique("tenant"), "provider", "INBOX")  # unique: marks outlive a test run


def entry(uid: int, *, dead: bool = False) -> StreamEntry:
    return StreamEntry(uid, {"event_id": f"e{uid}", "uid": str(uid)}, dead_letter=dead)


@pytest.fixture
def publisher(redis_client: redis.Redis[bytes], stream: str) -> EventPublisher:
    return EventPublisher(redis_client, stream=stream, dlq_stream=f"{stream}:dlq", mark_ttl_s=3600)


def test_a_retried_batch_adds_nothing_twice(
    publisher: EventPublisher, redis_client: redis.Redis[bytes], stream: str
) -> None:
    first = publisher.publish_folder_batch(KEY, 1, [entry(1), entry(2), entry(3, dead=True)])
    assert all(first)
    again = publisher.publish_folder_batch(KEY, 1, [entry(2), entry(3), entry(4)])
    assert again[:2] == [None, None] and again[2]
    assert [e["uid"] for e in stream_events(redis_client, stream)] == ["1", "2", "4"]
    assert [e["uid"] for e in stream_events(redis_client, f"{stream}:dlq")] == ["3"]
    assert publisher.load_published_mark(KEY, 1) == 4
    ttl = redis_client.ttl(published_mark_key(KEY, 1))
    assert 3500 < ttl <= 3600


def test_marks_are_per_folder_and_uidvalidity(
    publisher: EventPublisher, redis_client: redis.Redis[bytes], stream: str
) -> None:
    publisher.publish_folder_batch(KEY, 1, [entry(5)])
    publisher.publish_folder_batch(KEY, 2, [entry(1)])
    publisher.publish_folder_batch(FolderKey(KEY.tenant, "provider", "Other"), 1, [entry(1)])
    assert len(stream_events(redis_client, stream)) == 3


def test_uids_must_ascend(publisher: EventPublisher) -> None:
    with pytest.raises(ValueError, match="ascending"):
        publisher.publish_folder_batch(KEY, 1, [entry(2), entry(1)])


def test_the_script_counts_events_and_dead_letters_per_folder(
    publisher: EventPublisher, redis_client: redis.Redis[bytes]
) -> None:
    key = FolderKey(unique("tenant"), "provider", "INBOX")
    publisher.publish_folder_batch(key, 1, [entry(1), entry(2, dead=True), entry(3)])
    publisher.publish_folder_batch(key, 1, [entry(3)])  # skipped: not counted again
    stats = {
        k.decode(): v.decode()
        for k, v in redis_client.hgetall(provider_stats_key(key.tenant, key.provider_id)).items()
    }
    assert stats["events:INBOX"] == "2"
    assert stats["dead_letters:INBOX"] == "1"
    assert int(stats["last_event_ms:INBOX"]) > 0
