"""``email-service dlq list | show | replay | delete | move``: our dead-letter stream (shell).

Every action touches only dead letters of ours (``producer = email-service``): never the
consumer's own entries, even in a stream shared by mistake.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from email_service.publish.dead_letters import (
    ALREADY,
    FAILED,
    MISSING,
    PUBLISHED,
    DeadLetterQueue,
    ReplayOutcome,
)
from email_service.publish.events import DeadLetter
from email_service.publish.publisher import connect_redis
from email_service.settings import Settings

#: Outcomes of a replay, in the order ``dlq replay --all`` counts them.
_STATUSES = (PUBLISHED, ALREADY, MISSING, FAILED)
#: Columns of ``dlq list``.
LIST_COLUMNS = ("ID", "TENANT", "PROVIDER", "FOLDER", "UID", "REASON", "TIME")


def add_command(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="messages that could not become events")
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="list dead letters, oldest first")
    _filters(listing)
    listing.add_argument(
        "--limit", type=int, default=100, help="show at most this many (default 100)"
    )

    show = actions.add_parser("show", help="every field of one dead letter")
    show.add_argument("entry_id", help="the dead letter's stream id (from `dlq list`)")
    show.add_argument(
        "--raw", action="store_true", help="also print the raw message, when it is stored"
    )

    replay = actions.add_parser(
        "replay",
        help="publish the event of a dead letter (after its cause is fixed) and remove it; "
        "a dead letter is published once, however often it is replayed",
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("entry_id", nargs="?", help="the dead letter's stream id")
    which.add_argument("--all", action="store_true", help="every dead letter (filtered)")
    _filters(replay)

    delete = actions.add_parser("delete", help="remove a dead letter without replaying it")
    delete.add_argument("entry_id")

    move = actions.add_parser(
        "move",
        help="move dead letters of ours from an old stream (by default <event stream>:dlq, "
        "the consumer's, where earlier versions wrote them) to EMAIL_SERVICE_DLQ_STREAM; "
        "the consumer's own entries there are left alone",
    )
    move.add_argument(
        "--from", dest="source", default=None, help="the old stream (default <event stream>:dlq)"
    )


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", default=None, help="only this tenant's")
    parser.add_argument("--provider", default=None, help="only this provider's (id)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    client = connect_redis(settings.require_redis_url())
    from email_service.worker.process import WorkerParts

    with DeadLetterQueue(settings, client, build_parts=WorkerParts.build) as queue:
        match args.dlq_command:
            case "list":
                return _list(queue, args)
            case "show":
                return _show(queue, args.entry_id, raw=args.raw)
            case "replay":
                return _replay(queue, args)
            case "delete":
                if queue.delete(args.entry_id):
                    print(f"deleted {args.entry_id}")
                    return 0
                print(f"{args.entry_id}: no such dead letter")
                return 1
            case "move":
                source = args.source or f"{settings.streams.event_stream}:dlq"
                moved = queue.move_from(source)
                target = settings.streams.dlq_stream
                print(f"moved {moved} dead letters of ours from {source} to {target}")
                return 0
    raise AssertionError(args.dlq_command)  # pragma: no cover


def _list(queue: DeadLetterQueue, args: argparse.Namespace) -> int:
    rows: list[tuple[str, ...]] = []
    more = False
    for dead in queue.iter_dead_letters(tenant=args.tenant, provider_id=args.provider):
        if len(rows) >= args.limit:
            more = True
            break
        key = dead.key
        uid = str(dead.uid)
        rows.append(
            (
                dead.entry_id,
                key.tenant,
                key.provider_id,
                key.folder,
                uid,
                dead.reason,
                dead.failed_at,
            )
        )
    if not rows:
        print("no dead letters")
        return 0
    widths = [max(len(row[i]) for row in (LIST_COLUMNS, *rows)) for i in range(len(LIST_COLUMNS))]
    for row in (LIST_COLUMNS, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if more:
        print(f"... more than {args.limit}; use --limit, --tenant or --provider")
    return 0


def describe(dead: DeadLetter) -> list[str]:
    """The lines of ``dlq show`` (never the message itself)."""
    stored = dead.message
    if stored.raw is not None:
        raw = f"stored ({len(stored.raw)} bytes; --raw prints it)"
    else:
        raw = "not stored: `dlq replay` fetches it again by UID while UIDVALIDITY is unchanged"
    pairs = [
        ("id", dead.entry_id),
        ("event id", dead.event_id),
        ("tenant", dead.key.tenant),
        ("provider", f"{dead.key.provider_id} ({dead.provider_type})"),
        ("folder", dead.key.folder),
        ("uid", str(dead.uid)),
        ("uidvalidity", str(dead.uid_validity)),
        ("reason", dead.reason),
        ("detail", dead.detail),
        ("failed at", dead.failed_at),
        ("size", "unknown" if stored.size is None else f"{stored.size} bytes"),
        ("internal date", stored.internal_date.isoformat() if stored.internal_date else ""),
        ("flags", " ".join(stored.flags)),
        ("gmail msgid", "" if stored.gmail_msgid is None else str(stored.gmail_msgid)),
        ("raw message", raw),
    ]
    return [f"{name + ':':<15}{value}" for name, value in pairs]


def _show(queue: DeadLetterQueue, entry_id: str, *, raw: bool) -> int:
    try:
        dead = queue.find(entry_id)
    except ValueError as exc:
        print(f"{entry_id}: {exc}")
        return 1
    if dead is None:
        print(f"{entry_id}: no such dead letter")
        return 1
    print("\n".join(describe(dead)))
    if raw and dead.message.raw is not None:
        print("--- raw message ---", flush=True)
        sys.stdout.buffer.write(dead.message.raw)
        sys.stdout.buffer.flush()
    return 0


def _replay(queue: DeadLetterQueue, args: argparse.Namespace) -> int:
    if args.all:
        ids = [
            dead.entry_id
            for dead in queue.iter_dead_letters(tenant=args.tenant, provider_id=args.provider)
        ]
    else:
        ids = [args.entry_id]
    outcomes = [queue.replay(entry_id) for entry_id in ids]
    for outcome in outcomes:
        print(_outcome_line(outcome), flush=True)
    if args.all:
        counts = {status: sum(o.status == status for o in outcomes) for status in _STATUSES}
        print(", ".join(f"{count} {status}" for status, count in counts.items()))
    return 1 if any(o.status in (FAILED, MISSING) for o in outcomes) else 0


def _outcome_line(outcome: ReplayOutcome) -> str:
    match outcome.status:
        case "published":
            return f"{outcome.entry_id}: published as {outcome.stream_id} ({outcome.detail})"
        case "already":
            return (
                f"{outcome.entry_id}: already replayed as {outcome.stream_id}; "
                "the dead letter was removed"
            )
        case "missing":
            return f"{outcome.entry_id}: {outcome.detail}"
    return f"{outcome.entry_id}: not replayed: {outcome.detail}"
