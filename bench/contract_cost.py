"""What checking every entry against the consumer's contract costs, per entry.

    python bench/contract_cost.py [--messages 2000]

Builds the event of each message of the drain benchmark's mix (``common.mixed_message``:
text, HTML on every other, a 150 KB attachment on every tenth) with ``ingest.entry.build_entry``,
which checks each entry, and times ``contract.check.check_entry`` on the same entries on its
own. Prints both per entry and the check's share: the drain parses in a process pool, so
this share of the parse work is what the check can cost the backlog drain at most. CPU
time of one process, so far less noisy than the drain itself on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_TENANT, mixed_message
from email_service.contract.check import check_entry, load_schema
from email_service.imap.fetched import FetchedMessage
from email_service.ingest.entry import IngestTarget, build_entry
from email_service.model import FolderKey
from email_service.publish.events import StreamEntry
from email_service.settings import IngressLimits


def measure(messages: int) -> dict[str, float]:
    target = IngestTarget(FolderKey(BENCH_TENANT, "p", "INBOX"), "imap", 1, IngressLimits())
    now = datetime.now(UTC)
    raws = [mixed_message(n) for n in range(messages)]
    started = time.process_time()
    entries = [
        build_entry(
            FetchedMessage(uid=n + 1, raw=raw, internal_date=now, flags=(), size=len(raw)),
            target,
            now=now,
            random_uuid=uuid.uuid4(),
        )
        for n, raw in enumerate(raws)
    ]
    build_s = time.process_time() - started
    events = [entry for entry in entries if not entry.dead_letter]
    started = time.process_time()
    for entry in events:
        assert check_entry(entry.fields) is None
    check_s = time.process_time() - started
    plain_s = _plain_validator_s(events)
    return {
        "entries": len(entries),
        "events": len(events),
        "build_us_per_entry": build_s / len(entries) * 1e6,
        "check_us_per_entry": check_s / max(len(events), 1) * 1e6,
        "check_share_pct": check_s / build_s * 100,
        "plain_us_per_entry": plain_s / max(len(events), 1) * 1e6,
    }


def _plain_validator_s(events: list[StreamEntry]) -> float:
    """The same checks by ``jsonschema`` (an interpreting validator): why a compiled one."""
    import jsonschema

    definitions = load_schema()["definitions"]
    entry, payload = (
        jsonschema.Draft7Validator({"$ref": f"#/definitions/{name}", "definitions": definitions})
        for name in ("entry", "payload")
    )
    started = time.process_time()
    for event in events:
        entry.validate(dict(event.fields))
        payload.validate(json.loads(event.fields["payload_json"]))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    figures = measure(parser.parse_args().messages)
    print(
        f"{figures['entries']:.0f} entries ({figures['events']:.0f} events): building "
        f"{figures['build_us_per_entry']:.0f} us each, of which the contract check "
        f"{figures['check_us_per_entry']:.0f} us ({figures['check_share_pct']:.1f} %); the "
        f"same checks by jsonschema: {figures['plain_us_per_entry']:.0f} us"
    )


if __name__ == "__main__":
    main()
