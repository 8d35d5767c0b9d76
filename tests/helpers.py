"""Helpers shared by integration and end-to-end tests: messages and waiting with deadlines."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, TypeVar

import redis

from email_service.settings import DEAD_LETTER_STREAM_PREFIX

T = TypeVar("T")

#: Pause between checks while waiting for a condition; short, since tests wait often.
POLL_S = 0.05


def make_message(
    subject: str,
    *,
    body: str = "hello",
    sender: str = "alice@example.com",
    to: str = "support@example.com",
    message_id: str | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id or make_msgid(domain="example.com")
    message.set_content(body)
    return bytes(message)


def wait_for(condition: Callable[[], T], *, timeout_s: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy, or fail saying ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(POLL_S)


def stream_events(client: redis.Redis[bytes], stream: str) -> list[dict[str, Any]]:
    """Every entry of ``stream`` with its payload decoded."""
    events = []
    for entry_id, fields in client.xrange(stream):
        decoded = {k.decode(): v.decode() for k, v in fields.items()}
        decoded["id"] = entry_id.decode()
        if "payload_json" in decoded:
            decoded["payload"] = json.loads(decoded["payload_json"])
        events.append(decoded)
    return events


def wait_for_stream_entries(
    client: redis.Redis[bytes], stream: str, count: int, *, timeout_s: float = 10
) -> list[dict[str, Any]]:
    """At least ``count`` entries on ``stream`` (all of them returned)."""
    return wait_for(
        lambda: (e := stream_events(client, stream)) and len(e) >= count and e,
        timeout_s=timeout_s,
        what=f"{count} entries on {stream}",
    )


def subjects(events: list[dict[str, Any]]) -> list[str]:
    return [e["payload"]["emailData"]["subject"] for e in events if "payload" in e]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


#: Tenant ids for tests that need fixed ones: tenant ids are UUIDs (DESIGN.md section 3).
TENANT_A = "6f1f3d2c-8a4b-4c5d-9e6f-0a1b2c3d4e5f"
TENANT_B = "0b9e8d7c-6f5a-4b3c-8d2e-1f0a9b8c7d6e"
#: A fixed version-4 UUID for tests that pass the randomness of execution ids in.
RANDOM_UUID = "3d7e1c9a-2b4f-4a6e-8c1d-5f9b0e2a7c4d"


def dead_letter_stream(stream: str) -> str:
    """The default dead-letter stream of ours when the events go to ``stream``."""
    return DEAD_LETTER_STREAM_PREFIX + stream


def entry_fields(entry: dict[str, Any]) -> dict[str, str]:
    """The stream fields of an entry from ``stream_events`` (without its id and decoding)."""
    return {k: v for k, v in entry.items() if k not in ("id", "payload")}


#: A dead letter of the product's consumer, in its own layout (DESIGN.md section 3): what
#: our tools must never read, change or count.
CONSUMER_DEAD_LETTER = {
    "original_message": json.dumps({"event_id": "x", "payload_json": "{}"}),
    "error_message": "schema validation failed",
    "error_stack": "ValidationError: ...",
    "source_stream": "workflow:events:global",
    "original_id": "1700000000000-0",
    "moved_at": "2026-01-01T00:00:00.000Z",
}


#: ``/proc/net/tcp`` state of an established connection.
TCP_ESTABLISHED = "01"


def count_connections_to(port: int) -> int:
    """Established TCP connections on this machine whose remote end is local ``port`` (the
    clients' side of them, so a server's own sockets are not counted)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if remote_port == port and fields[3] == TCP_ESTABLISHED:
                        count += 1
        except FileNotFoundError:
            continue
    return count
