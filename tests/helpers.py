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
