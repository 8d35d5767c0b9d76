"""Publishes events to the Redis stream exactly once per UID (shell; owns redis).

Idempotency: each folder (at one UIDVALIDITY) has a *published mark* in Redis, the highest
UID already added to a stream. One Lua script, run atomically by Redis, compares each UID
of a batch with the mark, XADDs only those above it, and raises the mark in the same step.
A listener that crashes after the XADD and before its database cursor moved fetches those
UIDs again on restart; the script skips them. Because UIDs are published in ascending
order per folder, one integer per folder is all the state this takes, instead of one
dedupe key per message.

The same script counts events and dead letters per folder in a stats hash
(``publish.redis_keys.provider_stats_key``) for the status API.

Gmail shows one message in every label folder it carries, each copy with its own UID. An
entry may carry the message's X-GM-MSGID: the script then records the copy in a hash per
message (``publish.redis_keys.gmail_message_key``) and adds only the first copy, in the same atomic
step; the other copies still raise their folder's mark and are counted as ``gmail_copies``.

``replay_dead_letter`` publishes a dead letter's event and removes the dead letter in one
script, guarded by a key per event id (``publish.redis_keys.replayed_key``, set NX): replaying the
same dead letter twice, even concurrently, adds one event.

Large batches are published in several script calls of at most ``PUBLISH_CHUNK_BYTES``
each; every call is atomic and the marks make a retried one add nothing twice.

The mark expires ``EMAIL_SERVICE_PUBLISHED_MARK_TTL_S`` after the folder's last publish;
the cursor in the database is written right after each publish, so the mark only has to
outlive that gap. Nothing here trims the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from email_service.errors import PublishFailed
from email_service.ingest.limits import entry_bytes
from email_service.model import FolderKey
from email_service.publish.events import StreamEntry
from email_service.publish.redis_keys import (
    gmail_message_key,
    provider_stats_key,
    published_mark_key,
    replayed_key,
)

logger = logging.getLogger(__name__)

#: Seconds before a Redis call fails as transient; a publish is a small, fast script.
REDIS_SOCKET_TIMEOUT_S = 10

#: Bytes of entries sent in one script call: Redis holds the call's arguments while it runs.
PUBLISH_CHUNK_BYTES = 8 * 1024 * 1024

# KEYS: stream, mark, dead-letter stream, stats hash, then one Gmail message key per entry
# that has an X-GM-MSGID. ARGV: mark ttl, folder, uidvalidity, then per entry: uid, target
# ("event" or "dlq"), index of its Gmail key in KEYS (0: none), event id, field count, fields.
# Returns per entry: the new stream id, "" (already published), or "copy:<event id>" (a
# Gmail copy of a message already published as that event).
_PUBLISH_SCRIPT = """
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
local ttl = tonumber(ARGV[1])
local folder = ARGV[2]
local results = {}
local i = 4
while i <= #ARGV do
  local uid = tonumber(ARGV[i])
  local target = ARGV[i + 1]
  local gmail = tonumber(ARGV[i + 2])
  local event_id = ARGV[i + 3]
  local count = tonumber(ARGV[i + 4])
  local fields = {}
  for j = 1, count * 2 do
    fields[j] = ARGV[i + 4 + j]
  end
  i = i + 5 + count * 2
  if uid > mark then
    local first = false
    if gmail > 0 then
      local key = KEYS[gmail]
      first = redis.call('HGET', key, 'event_id')
      redis.call('HSET', key, 'copy:' .. folder .. '/' .. ARGV[3] .. '/' .. uid, event_id)
      if not first then
        redis.call('HSET', key, 'event_id', event_id)
      end
      redis.call('EXPIRE', key, ttl)
    end
    if first then
      table.insert(results, 'copy:' .. first)
      redis.call('HINCRBY', KEYS[4], 'gmail_copies:' .. folder, 1)
    else
      local stream = KEYS[1]
      local counter = 'events:'
      if target == 'dlq' then
        stream = KEYS[3]
        counter = 'dead_letters:'
      end
      local id = redis.call('XADD', stream, '*', unpack(fields))
      table.insert(results, id)
      redis.call('HINCRBY', KEYS[4], counter .. folder, 1)
      redis.call('HSET', KEYS[4], 'last_event_ms:' .. folder, string.match(id, '^(%d+)'))
    end
    mark = uid
  else
    table.insert(results, '')
  end
end
redis.call('SET', KEYS[2], mark, 'EX', ttl)
return results
"""

# KEYS: stream, dead-letter stream, replayed key, stats hash. ARGV: dead-letter entry id,
# ttl, folder, then the event's fields. Returns {outcome, stream id}: "published" (with the
# new id), "already" (replayed before: the id then), or "missing" (no such dead letter).
_REPLAY_SCRIPT = """
local done = redis.call('GET', KEYS[3])
if done then
  redis.call('XDEL', KEYS[2], ARGV[1])
  return {'already', done}
end
if #redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1]) == 0 then
  return {'missing', ''}
end
local fields = {}
for j = 4, #ARGV do
  fields[j - 3] = ARGV[j]
end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('SET', KEYS[3], id, 'EX', tonumber(ARGV[2]))
redis.call('XDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'events:' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[4], 'dead_letters_replayed:' .. ARGV[3], 1)
redis.call('HSET', KEYS[4], 'last_event_ms:' .. ARGV[3], string.match(id, '^(%d+)'))
return {'published', id}
"""

# KEYS: source stream, target stream. ARGV: entry id, then field/value pairs to set on the
# copy. Copies the entry to the target (new id) and deletes it from the source, or returns
# "" when the source has no such entry.
_MOVE_SCRIPT = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
  return ''
end
local fields = found[1][2]
for j = 2, #ARGV, 2 do
  local present = false
  for k = 1, #fields, 2 do
    if fields[k] == ARGV[j] then
      fields[k + 1] = ARGV[j + 1]
      present = true
    end
  end
  if not present then
    table.insert(fields, 1, ARGV[j + 1])
    table.insert(fields, 1, ARGV[j])
  end
end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""

#: Prefix of the result of a Gmail copy that was recorded, not added.
GMAIL_COPY_PREFIX = "copy:"


@dataclass(frozen=True)
class PublishResult:
    """What the publish did with one entry: ``stream_id`` when added; ``copy_of`` (the event
    id of the copy already on the stream) for a Gmail copy; neither when it was already
    published."""

    stream_id: str | None = None
    copy_of: str | None = None


@dataclass(frozen=True)
class ReplayResult:
    """``outcome`` is "published", "already" (replayed before) or "missing"."""

    outcome: str
    stream_id: str | None


def connect_redis(redis_url: str) -> redis.Redis[bytes]:
    """A client with bounded timeouts (no IO until first use)."""
    return redis.Redis.from_url(
        redis_url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
        health_check_interval=30,
    )


class EventPublisher:
    """Adds entries to the event and dead-letter streams, once per folder UID."""

    def __init__(
        self, client: redis.Redis[bytes], *, stream: str, dlq_stream: str, mark_ttl_s: int
    ) -> None:
        self._client = client
        self._stream = stream
        self._dlq_stream = dlq_stream
        self._mark_ttl_s = mark_ttl_s
        self._script = client.register_script(_PUBLISH_SCRIPT)
        self._replay = client.register_script(_REPLAY_SCRIPT)

    @property
    def client(self) -> redis.Redis[bytes]:
        return self._client

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def dlq_stream(self) -> str:
        return self._dlq_stream

    def publish_folder_batch(
        self, key: FolderKey, uid_validity: int, entries: Sequence[StreamEntry]
    ) -> list[PublishResult]:
        """Publish ``entries`` (ascending UIDs); say for each what was done."""
        uids = [entry.uid for entry in entries]
        if uids != sorted(set(uids)):
            raise ValueError("entries must have strictly ascending UIDs")
        results: list[PublishResult] = []
        for chunk in _chunks(entries):
            results += self._publish_chunk(key, uid_validity, chunk)
        return results

    def _publish_chunk(
        self, key: FolderKey, uid_validity: int, entries: Sequence[StreamEntry]
    ) -> list[PublishResult]:
        keys = [
            self._stream,
            published_mark_key(key, uid_validity),
            self._dlq_stream,
            provider_stats_key(key.tenant, key.provider_id),
        ]
        args: list[Any] = [self._mark_ttl_s, key.folder, uid_validity]
        for entry in entries:
            gmail_index = 0
            if entry.gmail_msgid is not None:
                keys.append(gmail_message_key(key.tenant, key.provider_id, entry.gmail_msgid))
                gmail_index = len(keys)
            target = "dlq" if entry.dead_letter else "event"
            args += [entry.uid, target, gmail_index, entry.fields["event_id"], len(entry.fields)]
            for name, value in entry.fields.items():
                args += [name, value]
        with redis_errors_as_publish_failed("publish to Redis failed", detail=True):
            reply = self._script(keys=keys, args=args)
        results = []
        for item in reply:
            text = _text(item)
            if text.startswith(GMAIL_COPY_PREFIX):
                results.append(PublishResult(copy_of=text.removeprefix(GMAIL_COPY_PREFIX)))
            else:
                results.append(PublishResult(stream_id=text or None))
        return results

    def replay_dead_letter(
        self, key: FolderKey, dead_letter_id: str, fields: Mapping[str, str]
    ) -> ReplayResult:
        """Add the event ``fields`` of the dead letter ``dead_letter_id`` and remove the dead
        letter, once per event id."""
        keys = [
            self._stream,
            self._dlq_stream,
            replayed_key(fields["event_id"]),
            provider_stats_key(key.tenant, key.provider_id),
        ]
        args: list[Any] = [dead_letter_id, self._mark_ttl_s, key.folder]
        for name, value in fields.items():
            args += [name, value]
        with redis_errors_as_publish_failed("replay to Redis failed", detail=True):
            outcome, stream_id = self._replay(keys=keys, args=args)
        return ReplayResult(_text(outcome), _text(stream_id) or None)

    def load_published_mark(self, key: FolderKey, uid_validity: int) -> int:
        """Highest UID of the folder already published (0 when unknown)."""
        with redis_errors_as_publish_failed("reading from Redis failed"):
            value = self._client.get(published_mark_key(key, uid_validity))
        return int(value) if value is not None else 0


def _chunks(entries: Sequence[StreamEntry]) -> list[list[StreamEntry]]:
    chunks: list[list[StreamEntry]] = []
    size = 0
    for entry in entries:
        cost = entry_bytes(entry.fields)
        if not chunks or size + cost > PUBLISH_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += cost
    return chunks


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def redis_errors_as_publish_failed(what: str, *, detail: bool = False) -> Iterator[None]:
    """A Redis error raised inside becomes ``PublishFailed("<what>: <kind>")`` (and Redis's
    own message with ``detail``): the one translation of redis-py's errors into ours."""
    try:
        yield
    except redis.RedisError as exc:
        message = f"{what}: {type(exc).__name__}"
        raise PublishFailed(f"{message}: {exc}" if detail else message) from exc


def check_redis(client: redis.Redis[bytes]) -> None:
    """Raise ``PublishFailed`` unless Redis answers PING."""
    with redis_errors_as_publish_failed("Redis is unreachable"):
        client.ping()


def read_stream(
    client: redis.Redis[bytes], stream: str, *, after_id: str, block_ms: int, count: int = 100
) -> list[tuple[str, dict[str, str]]]:
    """Entries after ``after_id`` (``$`` for new only), waiting up to ``block_ms``."""
    with redis_errors_as_publish_failed("reading the stream failed"):
        reply = client.xread({stream: after_id}, count=count, block=block_ms)
    entries: list[tuple[str, dict[str, str]]] = []
    for _name, items in reply or []:
        for entry_id, fields in items:
            entries.append((_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}))
    return entries


def last_stream_id(client: redis.Redis[bytes], stream: str) -> str:
    """Id of the newest entry, or ``0-0`` for an empty or missing stream."""
    with redis_errors_as_publish_failed("reading the stream failed"):
        newest = client.xrevrange(stream, count=1)
    return _text(newest[0][0]) if newest else "0-0"


def read_entries(
    client: redis.Redis[bytes], stream: str, *, after_id: str = "-", count: int = 100
) -> list[tuple[str, dict[str, str]]]:
    """Up to ``count`` entries of ``stream`` after ``after_id`` (``-``: from the start)."""
    start = after_id if after_id == "-" else f"({after_id}"
    with redis_errors_as_publish_failed("reading the stream failed"):
        items = client.xrange(stream, min=start, max="+", count=count)
    return [
        (_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
        for entry_id, fields in items
    ]


def read_entry(client: redis.Redis[bytes], stream: str, entry_id: str) -> dict[str, str] | None:
    """The fields of one entry, None when there is no such entry."""
    with redis_errors_as_publish_failed("reading the stream failed"):
        try:
            items = client.xrange(stream, min=entry_id, max=entry_id, count=1)
        except redis.ResponseError:
            return None  # not a stream id at all
    if not items:
        return None
    return {_text(k): _text(v) for k, v in items[0][1].items()}


def move_entry(
    client: redis.Redis[bytes],
    source: str,
    entry_id: str,
    target: str,
    set_fields: Mapping[str, str],
) -> bool:
    """Add entry ``entry_id`` of ``source`` to ``target`` (with ``set_fields`` set) and delete
    it from ``source``, in one step; False when ``source`` has no such entry."""
    args: list[str] = [entry_id]
    for name, value in set_fields.items():
        args += [name, value]
    with redis_errors_as_publish_failed("moving a stream entry failed"):
        new_id = client.register_script(_MOVE_SCRIPT)(keys=[source, target], args=args)
    return bool(_text(new_id))


def delete_entry(client: redis.Redis[bytes], stream: str, entry_id: str) -> bool:
    """Remove one entry; False when there was none."""
    with redis_errors_as_publish_failed("deleting from the stream failed"):
        return bool(client.xdel(stream, entry_id))
