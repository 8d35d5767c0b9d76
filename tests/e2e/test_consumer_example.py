"""The consumer example (examples/consumer.py) against real Redis and events the worker
published from Dovecot: ack, reclaim from a killed consumer, dead-letter a poison event,
skip a duplicate."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from tests.conftest import MailUser
from tests.helpers import make_message, wait_for, wait_for_stream_entries
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consumer.py"


@pytest.fixture(scope="module")
def consumer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("consumer_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def subject_of(event: dict[str, Any]) -> str:
    return str(event["payload"]["emailData"]["subject"])


def test_consumer_acks_reclaims_dead_letters_and_dedupes(
    consumer: ModuleType,
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
    redis_url: str,
) -> None:
    worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    worker.start()
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE")
    for subject in ("first", "stuck", "poison", "last"):
        dovecot.deliver(mail_user.name, make_message(subject))
    entries = wait_for_stream_entries(redis_client, stream, 4)
    worker.stop()

    doomed = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLE),
            "--redis-url",
            redis_url,
            "--stream",
            stream,
            "--group",
            "workflow",
            "--consumer",
            "doomed",
            "--hang-on-subject",
            "stuck",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert doomed.stdout is not None
        lines = [doomed.stdout.readline() for _ in range(2)]
        assert "first" in lines[0] and lines[1].startswith("hanging on")
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        if doomed.stdout is not None:
            doomed.stdout.close()
    pending = redis_client.xpending(stream, "workflow")
    assert pending["pending"] == 3, "the killed consumer left stuck, poison and last unacked"

    config = consumer.ConsumerConfig(
        stream=stream,
        group="workflow",
        consumer="survivor",
        max_deliveries=2,
        claim_idle_ms=100,
        block_ms=100,
    )
    handled: list[str] = []

    def handle(event: dict[str, Any]) -> None:
        if subject_of(event) == "poison":
            raise ValueError("cannot turn this into a ticket")
        handled.append(subject_of(event))

    dead: list[str] = []

    def settled() -> bool:
        stats = consumer.consume_round(redis_client, config, handle)
        dead.extend(stats.dead_lettered)
        return redis_client.xpending(stream, "workflow")["pending"] == 0

    wait_for(settled, timeout_s=10, what="every entry acknowledged")
    assert sorted(handled) == ["last", "stuck"]
    dlq = redis_client.xrange(config.dead_letter_stream)
    assert len(dlq) == 1 and len(dead) == 1
    fields = {k.decode(): v.decode() for k, v in dlq[0][1].items()}
    assert "cannot turn this into a ticket" in fields["consumer_error"]
    assert fields["event_id"] == entries[2]["event_id"]

    # A copy of an event already processed (say, re-added by an operator) is acked, not redone.
    first = redis_client.xrange(stream, count=1)[0][1]
    redis_client.xadd(stream, first)
    stats = consumer.consume_round(redis_client, config, handle)
    assert stats.duplicates == 1 and stats.handled == []
    assert sorted(handled) == ["last", "stuck"]


def test_the_example_keeps_reading_an_idle_stream_longer_than_its_block_time(
    consumer: ModuleType, redis_client: redis.Redis[bytes], stream: str, redis_url: str
) -> None:
    """Run as product developers copy it (its defaults, redis-py's default client settings):
    an idle stream for longer than the XREADGROUP block must not kill it, and an event that
    arrives afterwards is handled."""
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--redis-url", redis_url, "--stream", stream],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        wait_for(
            lambda: redis_client.exists(stream) or process.poll() is not None,
            timeout_s=10,
            what="the consumer group created",
        )
        # Three blocks: a block that ends just as the socket times out can win the race once.
        idle_s = 3 * consumer.ConsumerConfig.block_ms / 1000 + 1
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=idle_s)  # the process must still be running after this
        event = {"event_id": "idle-then-one", "payload_json": json.dumps({"emailData": {}})}
        redis_client.xadd(stream, event)
        assert process.stdout is not None
        assert process.stdout.readline().startswith("idle-then-one")
    finally:
        process.kill()
        _out, err = process.communicate(timeout=10)
    assert "Traceback" not in err, err
