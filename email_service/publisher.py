"""Publishes events to the Redis stream exactly once per UID (shell; owns redis).

Idempotency: each folder (at one UIDVALIDITY) has a *published mark* in Redis, the highest
UID already added to a stream. One Lua script, run atomically by Redis, compares each UID
of a batch with the mark, XADDs only those above it, and raises the mark in the same step.
A listener that crashes after the XADD and before its database cursor moved fetches those
UIDs again on restart; the script skips them. Because UIDs are published in ascending
order per folder, one integer per folder is all the state this takes, instead of one
dedupe key per message.

The same script counts events and dead letters per folder in a stats hash
(``redis_keys.provider_stats_key``) for the status API.

The mark expires ``EMAIL_SERVICE_PUBLISHED_MARK_TTL_S`` after the folder's last publish;
the cursor in the database is written right after each publish, so the mark only has to
outlive that gap. Nothing here trims the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from email_service.errors import PublishFailed
from email_service.model import FolderKey
from email_service.redis_keys import provider_stats_key, published_mark_key

logger = logging.getLogger(__name__)

#: Seconds before a Redis call fails as transient; a publish is a small, fast script.
REDIS_SOCKET_TIMEOUT_S = 10

_PUBLISH_SCRIPT = """
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
local ttl = tonumber(ARGV[1])
local results = {}
local i = 3
while i <= #ARGV do
  local uid = tonumber(ARGV[i])
  local target = ARGV[i + 1]
  local count = tonumber(ARGV[i + 2])
  local fields = {}
  for j = 1, count * 2 do
    fields[j] = ARGV[i + 2 + j]
  end
  i = i + 3 + count * 2
  if uid > mark then
    local stream = KEYS[1]
    local counter = 'events:'
    if target == 'dlq' then
      stream = KEYS[3]
      counter = 'dead_letters:'
    end
    local id = redis.call('XADD', stream, '*', unpack(fields))
    table.insert(results, id)
    redis.call('HINCRBY', KEYS[4], counter .. ARGV[2], 1)
    redis.call('HSET', KEYS[4], 'last_event_ms:' .. ARGV[2], string.match(id, '^(%d+)'))
    mark = uid
  else
    table.insert(results, '')
  end
end
redis.call('SET', KEYS[2], mark, 'EX', ttl)
return results
"""


@dataclass(frozen=True)
class StreamEntry:
    """One entry for the event stream, or for the dead-letter stream."""

    uid: int
    fields: Mapping[str, str]
    dead_letter: bool = False


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
    ) -> list[str | None]:
        """Publish ``entries`` (ascending UIDs); return each one's stream id, None if skipped."""
        if not entries:
            return []
        uids = [entry.uid for entry in entries]
        if uids != sorted(set(uids)):
            raise ValueError("entries must have strictly ascending UIDs")
        args: list[Any] = [self._mark_ttl_s, key.folder]
        for entry in entries:
            args += [entry.uid, "dlq" if entry.dead_letter else "event", len(entry.fields)]
            for name, value in entry.fields.items():
                args += [name, value]
        keys = [
            self._stream,
            published_mark_key(key, uid_validity),
            self._dlq_stream,
            provider_stats_key(key.tenant, key.provider_id),
        ]
        try:
            reply = self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise PublishFailed(f"publish to Redis failed: {type(exc).__name__}: {exc}") from exc
        return [_text(item) or None for item in reply]

    def load_published_mark(self, key: FolderKey, uid_validity: int) -> int:
        """Highest UID of the folder already published (0 when unknown)."""
        try:
            value = self._client.get(published_mark_key(key, uid_validity))
        except redis.RedisError as exc:
            raise PublishFailed(f"reading from Redis failed: {type(exc).__name__}") from exc
        return int(value) if value is not None else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_redis(client: redis.Redis[bytes]) -> None:
    """Raise ``PublishFailed`` unless Redis answers PING."""
    try:
        client.ping()
    except redis.RedisError as exc:
        raise PublishFailed(f"Redis is unreachable: {type(exc).__name__}") from exc


def read_stream(
    client: redis.Redis[bytes], stream: str, *, after_id: str, block_ms: int, count: int = 100
) -> list[tuple[str, dict[str, str]]]:
    """Entries after ``after_id`` (``$`` for new only), waiting up to ``block_ms``."""
    try:
        reply = client.xread({stream: after_id}, count=count, block=block_ms)
    except redis.RedisError as exc:
        raise PublishFailed(f"reading the stream failed: {type(exc).__name__}") from exc
    entries: list[tuple[str, dict[str, str]]] = []
    for _name, items in reply or []:
        for entry_id, fields in items:
            entries.append((_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}))
    return entries


def last_stream_id(client: redis.Redis[bytes], stream: str) -> str:
    """Id of the newest entry, or ``0-0`` for an empty or missing stream."""
    try:
        newest = client.xrevrange(stream, count=1)
    except redis.RedisError as exc:
        raise PublishFailed(f"reading the stream failed: {type(exc).__name__}") from exc
    return _text(newest[0][0]) if newest else "0-0"
