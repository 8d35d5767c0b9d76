"""Idempotent publishing, Gmail copies and dead-letter replay against real Redis."""

from __future__ import annotations

import pytest
import redis

from email_service.model import FolderKey
from email_service.publish.events import StreamEntry
from email_service.publish.publisher import EventPublisher, PublishResult, ReplayResult
from email_service.publish.redis_keys import (
    gmail_message_key,
    provider_stats_key,
    published_mark_key,
    replayed_key,
)
from tests.helpers import dead_letter_stream, stream_events, unique

pytestmark = pytest.mark.integration

KEY = FolderKey(unique("tenant"), "provider", "INBOX")  # unique: marks outlive a test run


def entry(uid: int, *, dead: bool = False, msgid: int | None = None, tag: str = "") -> StreamEntry:
    fields = {"event_id": f"e{uid}{tag}", "uid": str(uid)}
    return StreamEntry(uid, fields, dead_letter=dead, gmail_msgid=msgid)


def stats_of(redis_client: redis.Redis[bytes], key: FolderKey) -> dict[str, str]:
    stats = redis_client.hgetall(provider_stats_key(key.tenant, key.provider_id))
    return {k.decode(): v.decode() for k, v in stats.items()}


@pytest.fixture
def publisher(redis_client: redis.Redis[bytes], stream: str) -> EventPublisher:
    return EventPublisher(
        redis_client, stream=stream, dlq_stream=dead_letter_stream(stream), mark_ttl_s=3600
    )


def test_a_retried_batch_adds_nothing_twice(
    publisher: EventPublisher, redis_client: redis.Redis[bytes], stream: str
) -> None:
    first = publisher.publish_folder_batch(KEY, 1, [entry(1), entry(2), entry(3, dead=True)])
    assert all(result.stream_id for result in first)
    again = publisher.publish_folder_batch(KEY, 1, [entry(2), entry(3), entry(4)])
    assert again[:2] == [PublishResult(), PublishResult()] and again[2].stream_id
    assert [e["uid"] for e in stream_events(redis_client, stream)] == ["1", "2", "4"]
    assert [e["uid"] for e in stream_events(redis_client, dead_letter_stream(stream))] == ["3"]
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
    stats = stats_of(redis_client, key)
    assert stats["events:INBOX"] == "2"
    assert stats["dead_letters:INBOX"] == "1"
    assert int(stats["last_event_ms:INBOX"]) > 0


def test_gmail_copies_in_other_label_folders_are_recorded_not_published(
    publisher: EventPublisher, redis_client: redis.Redis[bytes], stream: str
) -> None:
    inbox = FolderKey(unique("tenant"), "provider", "INBOX")
    label = FolderKey(inbox.tenant, "provider", "Support")
    first = publisher.publish_folder_batch(
        inbox, 7, [entry(1, msgid=111), entry(2, msgid=222), entry(3)]
    )
    copies = publisher.publish_folder_batch(
        label, 9, [entry(5, msgid=222, tag="-label"), entry(6, msgid=333, tag="-label")]
    )
    again = publisher.publish_folder_batch(label, 9, [entry(5, msgid=222, tag="-label")])

    assert all(result.stream_id for result in first)
    assert copies[0] == PublishResult(copy_of="e2")
    assert copies[1].stream_id is not None
    assert again == [PublishResult()]  # below the mark: not even recorded twice
    assert [e["event_id"] for e in stream_events(redis_client, stream)] == [
        "e1",
        "e2",
        "e3",
        "e6-label",
    ]
    assert publisher.load_published_mark(label, 9) == 6
    record = redis_client.hgetall(gmail_message_key(inbox.tenant, "provider", 222))
    assert {k.decode(): v.decode() for k, v in record.items()} == {
        "event_id": "e2",
        "copy:INBOX/7/2": "e2",
        "copy:Support/9/5": "e5-label",
    }
    assert 3500 < redis_client.ttl(gmail_message_key(inbox.tenant, "provider", 222)) <= 3600
    stats = stats_of(redis_client, inbox)
    assert (stats["events:INBOX"], stats["events:Support"]) == ("3", "1")
    assert stats["gmail_copies:Support"] == "1"


def test_a_gmail_message_that_is_a_dead_letter_is_not_added_again_from_another_label(
    publisher: EventPublisher, redis_client: redis.Redis[bytes], stream: str
) -> None:
    inbox = FolderKey(unique("tenant"), "provider", "INBOX")
    publisher.publish_folder_batch(inbox, 1, [entry(1, dead=True, msgid=42)])
    result = publisher.publish_folder_batch(
        FolderKey(inbox.tenant, "provider", "Label"), 1, [entry(1, dead=True, msgid=42, tag="x")]
    )
    assert result == [PublishResult(copy_of="e1")]
    assert len(stream_events(redis_client, dead_letter_stream(stream))) == 1


def test_large_batches_are_published_in_chunks_in_order(
    publisher: EventPublisher, redis_client: redis.Redis[bytes], stream: str
) -> None:
    key = FolderKey(unique("tenant"), "provider", "INBOX")
    big = "x" * (3 * 1024 * 1024)
    entries = [StreamEntry(uid, {"event_id": f"e{uid}", "body": big}) for uid in range(1, 6)]

    results = publisher.publish_folder_batch(key, 1, entries)

    assert all(result.stream_id for result in results)
    assert [e["event_id"] for e in stream_events(redis_client, stream)] == [
        f"e{uid}" for uid in range(1, 6)
    ]


def test_replaying_a_dead_letter_adds_its_event_once_and_removes_it(
    publisher: EventPublisher, redis_client: redis.Redis[bytes], stream: str
) -> None:
    key = FolderKey(unique("tenant"), "provider", "INBOX")
    event_id = unique("event")
    dead_id = redis_client.xadd(
        dead_letter_stream(stream), {"event_id": event_id, "uid": "4"}
    ).decode()
    fields = {"event_id": event_id, "payload_json": "{}"}

    first = publisher.replay_dead_letter(key, dead_id, fields)
    second = publisher.replay_dead_letter(key, dead_id, fields)
    unknown = publisher.replay_dead_letter(key, "1-1", {**fields, "event_id": unique("other")})

    assert first.outcome == "published" and first.stream_id
    assert second == ReplayResult("already", first.stream_id)
    assert unknown == ReplayResult("missing", None)
    assert [e["event_id"] for e in stream_events(redis_client, stream)] == [event_id]
    assert stream_events(redis_client, dead_letter_stream(stream)) == []
    assert redis_client.get(replayed_key(event_id)) == first.stream_id.encode()
    stats = stats_of(redis_client, key)
    assert (stats["events:INBOX"], stats["dead_letters_replayed:INBOX"]) == ("1", "1")


def test_a_dead_letter_added_again_after_its_replay_is_not_replayed_twice(
    publisher: EventPublisher, redis_client: redis.Redis[bytes], stream: str
) -> None:
    key = FolderKey(unique("tenant"), "provider", "INBOX")
    event_id = unique("event")
    fields = {"event_id": event_id}
    first_id = redis_client.xadd(dead_letter_stream(stream), fields).decode()
    publisher.replay_dead_letter(key, first_id, fields)
    copy_id = redis_client.xadd(
        dead_letter_stream(stream), fields
    ).decode()  # restored from a backup

    result = publisher.replay_dead_letter(key, copy_id, fields)

    assert result.outcome == "already"
    assert len(stream_events(redis_client, stream)) == 1
    assert stream_events(redis_client, dead_letter_stream(stream)) == []
