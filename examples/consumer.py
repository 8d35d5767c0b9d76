"""A runnable consumer of the ``INBOUND_EMAIL_RECEIVED`` stream, as the workflow worker
should read it. Needs only ``redis`` (redis-py).

    python examples/consumer.py --redis-url redis://127.0.0.1:6379/0 \\
        --stream workflow:events:global --group workflow --consumer "$HOSTNAME"

How it reads (docs/consumers.md explains why):

1. One consumer group per application (``--group``), one consumer name per process.
   The group is created at ``0`` the first time (history included) with MKSTREAM.
2. Each round first reclaims entries another consumer read but did not acknowledge for
   ``--claim-idle-ms`` (it was killed, or hangs) with XAUTOCLAIM, then reads new entries
   with ``XREADGROUP ... >``.
3. An entry whose ``event_id`` was already processed (a marker key, set in the same
   MULTI as the XACK) is acknowledged without running the handler again: the service never
   publishes one message twice, but a consumer can crash between its work and its ACK.
4. An entry delivered more than ``--max-deliveries`` times is copied to
   ``<stream>:consumer-dlq`` with the error and acknowledged, so a poison event cannot block
   the group.
5. ``XREADGROUP ... BLOCK`` waits up to ``--block-ms`` (2 s) for new entries, so the Redis
   client's socket timeout must be longer than that: redis-py's default is 5 s, and a
   block of 5 s or more on an idle stream ends in ``TimeoutError: Timeout reading from
   socket``. ``connect`` sets it to the block time plus ``SOCKET_TIMEOUT_MARGIN_S``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

logger = logging.getLogger("consumer")

Handler = Callable[[dict[str, Any]], None]

#: How long the marker of a processed event_id is kept (longer than any redelivery).
PROCESSED_TTL_S = 7 * 24 * 3600
#: Socket timeout beyond the XREADGROUP block time: Redis answers a block that ran out at
#: once, so anything slower than this is a network or server problem worth an error.
SOCKET_TIMEOUT_MARGIN_S = 10


@dataclass
class ConsumerConfig:
    stream: str = "workflow:events:global"
    group: str = "workflow"
    consumer: str = "consumer-1"
    max_deliveries: int = 5
    claim_idle_ms: int = 60_000
    #: XREADGROUP's BLOCK: how long one round waits for new entries on an idle stream.
    block_ms: int = 2_000
    count: int = 50

    @property
    def dead_letter_stream(self) -> str:
        return f"{self.stream}:consumer-dlq"

    def processed_key(self, event_id: str) -> str:
        return f"{self.stream}:processed:{self.group}:{event_id}"


@dataclass
class RoundStats:
    handled: list[str] = field(default_factory=list)  # event ids
    duplicates: int = 0
    reclaimed: int = 0
    dead_lettered: list[str] = field(default_factory=list)
    failed: int = 0


def connect(redis_url: str, config: ConsumerConfig) -> redis.Redis:
    """A client whose socket timeout outlasts the longest XREADGROUP block."""
    return redis.Redis.from_url(
        redis_url, socket_timeout=config.block_ms / 1000 + SOCKET_TIMEOUT_MARGIN_S
    )


def ensure_group(client: redis.Redis, config: ConsumerConfig) -> None:
    try:
        client.xgroup_create(config.stream, config.group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def decode_event(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """The entry's fields as strings, with ``payload_json`` parsed into ``payload``."""
    event = {k.decode(): v.decode() for k, v in fields.items()}
    event["payload"] = json.loads(event.get("payload_json", "null"))
    return event


def consume_round(client: redis.Redis, config: ConsumerConfig, handle: Handler) -> RoundStats:
    """Reclaim stuck entries, read new ones, and process each once."""
    stats = RoundStats()
    _next, claimed, _deleted = client.xautoclaim(
        config.stream,
        config.group,
        config.consumer,
        min_idle_time=config.claim_idle_ms,
        start_id="0-0",
        count=config.count,
    )
    stats.reclaimed = len(claimed)
    entries = list(claimed)
    reply = client.xreadgroup(
        config.group,
        config.consumer,
        {config.stream: ">"},
        count=config.count,
        block=config.block_ms if not entries else 1,
    )
    for _stream, items in reply or []:
        entries.extend(items)
    for entry_id, fields in entries:
        if fields is None:  # trimmed away while pending
            client.xack(config.stream, config.group, entry_id)
            continue
        _process(client, config, handle, entry_id=entry_id, fields=fields, stats=stats)
    return stats


def _deliveries(client: redis.Redis, config: ConsumerConfig, entry_id: bytes) -> int:
    pending = client.xpending_range(
        config.stream, config.group, min=entry_id, max=entry_id, count=1
    )
    return int(pending[0]["times_delivered"]) if pending else 1


def _process(
    client: redis.Redis,
    config: ConsumerConfig,
    handle: Handler,
    *,
    entry_id: bytes,
    fields: dict[bytes, bytes],
    stats: RoundStats,
) -> None:
    event = decode_event(fields)
    event_id = event.get("event_id", entry_id.decode())
    if client.exists(config.processed_key(event_id)):
        client.xack(config.stream, config.group, entry_id)
        stats.duplicates += 1
        return
    try:
        handle(event)
    except Exception as exc:  # the handler's failure: retried until max_deliveries
        stats.failed += 1
        deliveries = _deliveries(client, config, entry_id)
        logger.warning("event %s failed (delivery %d): %s", event_id, deliveries, exc)
        if deliveries >= config.max_deliveries:
            with client.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    config.dead_letter_stream,
                    {
                        **{k.decode(): v.decode() for k, v in fields.items()},
                        "consumer_error": f"{type(exc).__name__}: {exc}"[:2000],
                        "source_entry_id": entry_id.decode(),
                        "deliveries": str(deliveries),
                    },
                )
                pipe.xack(config.stream, config.group, entry_id)
                pipe.execute()
            stats.dead_lettered.append(event_id)
        return
    with client.pipeline(transaction=True) as pipe:
        pipe.set(config.processed_key(event_id), entry_id, ex=PROCESSED_TTL_S)
        pipe.xack(config.stream, config.group, entry_id)
        pipe.execute()
    stats.handled.append(event_id)


def print_event(event: dict[str, Any]) -> None:
    data = (event.get("payload") or {}).get("emailData", {})
    print(
        f"{event.get('event_id')} tenant={event.get('tenant')} subject={data.get('subject', '')!r}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Consume INBOUND_EMAIL_RECEIVED events.")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--stream", default=ConsumerConfig.stream)
    parser.add_argument("--group", default=ConsumerConfig.group)
    parser.add_argument("--consumer", default=ConsumerConfig.consumer)
    parser.add_argument("--max-deliveries", type=int, default=ConsumerConfig.max_deliveries)
    parser.add_argument("--claim-idle-ms", type=int, default=ConsumerConfig.claim_idle_ms)
    parser.add_argument("--block-ms", type=int, default=ConsumerConfig.block_ms)
    parser.add_argument(
        "--hang-on-subject",
        default=None,
        help="demo of a stuck consumer: block forever on a matching subject",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = ConsumerConfig(
        stream=args.stream,
        group=args.group,
        consumer=args.consumer,
        max_deliveries=args.max_deliveries,
        claim_idle_ms=args.claim_idle_ms,
        block_ms=args.block_ms,
    )
    client = connect(args.redis_url, config)
    ensure_group(client, config)

    def handle(event: dict[str, Any]) -> None:
        subject = ((event.get("payload") or {}).get("emailData") or {}).get("subject", "")
        if args.hang_on_subject and args.hang_on_subject in subject:
            print(f"hanging on {event.get('event_id')}", flush=True)
            signal.pause()
        print_event(event)

    while True:
        consume_round(client, config, handle)
        time.sleep(0)


if __name__ == "__main__":
    main()
