"""``email-service events tail``: print events as they arrive (shell)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from email_service.publish.publisher import connect_redis, last_stream_id, read_stream
from email_service.settings import Settings

#: How long one blocking read waits before looping (and noticing Ctrl-C).
BLOCK_MS = 1000


def add_command(commands: Any) -> None:
    events = commands.add_parser("events", help="read the event stream").add_subparsers(
        dest="events_command", required=True, metavar="ACTION"
    )
    tail = events.add_parser("tail", help="print events as they arrive")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument(
        "--from-start",
        action="store_true",
        help="print the whole stream first, not only new events",
    )
    tail.add_argument("--count", type=int, default=None, help="stop after this many events")
    tail.add_argument("--dlq", action="store_true", help="read the dead-letter stream")


def describe_event(entry_id: str, fields: dict[str, str]) -> str:
    """One readable line for an event (no addresses or subjects beyond what is shown)."""
    if "payload_json" not in fields:
        return (
            f"{entry_id}  dead letter  tenant={fields.get('tenant')} "
            f"folder={fields.get('folder')} uid={fields.get('uid')} "
            f"reason={fields.get('reason')}"
        )
    data = json.loads(fields["payload_json"]).get("emailData", {})
    imap = data.get("imap", {})
    sender = (data.get("from") or {}).get("email", "")
    return (
        f"{entry_id}  {fields.get('event_name')}  tenant={fields.get('tenant')} "
        f"folder={imap.get('folder')} uid={imap.get('uid')} from={sender} "
        f"subject={data.get('subject', '')!r}"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    client = connect_redis(settings.require_redis_url())
    stream = settings.streams.dlq_stream if args.dlq else settings.streams.event_stream
    after = "0-0" if args.from_start else last_stream_id(client, stream)
    printed = 0
    while args.count is None or printed < args.count:
        for entry_id, fields in read_stream(client, stream, after_id=after, block_ms=BLOCK_MS):
            after = entry_id
            if args.json:
                print(json.dumps({"id": entry_id, **fields}, ensure_ascii=False), flush=True)
            else:
                print(describe_event(entry_id, fields), flush=True)
            printed += 1
            if args.count is not None and printed >= args.count:
                break
    return 0
