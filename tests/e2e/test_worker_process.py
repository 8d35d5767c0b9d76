"""The ``email-service`` processes as a user runs them: started, SIGKILLed, restarted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from tests.conftest import MailUser
from tests.e2e.processes import WorkerProcess, add_dovecot_provider, cli
from tests.helpers import (
    TENANT_A,
    dead_letter_stream,
    make_message,
    stream_events,
    wait_for,
    wait_for_stream_entries,
)

pytestmark = pytest.mark.e2e

#: Messages in the backlog that the worker is killed in the middle of.
BACKLOG = 600


@pytest.fixture
def workers(environ: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.kill()


def test_sigkill_in_the_middle_of_a_backlog_loses_nothing_and_doubles_nothing(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    redis_client: redis.Redis[bytes],
    stream: str,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    env = {**environ, "IMAP_FETCH_BATCH_SIZE": "10", "IMAP_LEASE_TTL_MS": "3000"}
    provider_id = add_dovecot_provider(env, dovecot, mail_user)
    listed = cli("provider", "list", env=env)
    assert provider_id in listed.stdout and TENANT_A in listed.stdout

    first = WorkerProcess(env, tmp_path / "worker.log")
    workers.append(first)
    wait_for(lambda: first.get("/ready")[0] == 200, timeout_s=20, what="worker ready")
    assert first.get("/health") == (200, {"status": "ok"})
    dovecot.deliver(mail_user.name, make_message("baseline"))
    wait_for_stream_entries(redis_client, stream, 1)
    first.kill()

    message_ids = [f"<backlog-{n}@example.com>" for n in range(BACKLOG)]
    for n, message_id in enumerate(message_ids):
        dovecot.deliver(mail_user.name, make_message(f"backlog {n}", message_id=message_id))

    second = WorkerProcess(env, tmp_path / "worker.log")
    workers.append(second)
    wait_for_stream_entries(redis_client, stream, 60, timeout_s=30)
    second.kill()
    killed_at = len(stream_events(redis_client, stream))
    assert killed_at < BACKLOG + 1, "the backlog drained before the kill; raise BACKLOG"

    third = WorkerProcess(env, tmp_path / "worker.log")
    workers.append(third)
    events = wait_for_stream_entries(redis_client, stream, BACKLOG + 1, timeout_s=60)
    dovecot.deliver(mail_user.name, make_message("after restart"))
    events = wait_for_stream_entries(redis_client, stream, BACKLOG + 2, timeout_s=10)
    with urllib.request.urlopen(f"http://127.0.0.1:{third.port}/metrics", timeout=2) as r:
        metrics = r.read().decode()
    assert "email_service_events_published_total" in metrics
    assert third.terminate() == 0

    ids = [e["payload"]["emailData"]["id"] for e in events]
    assert len(events) == BACKLOG + 2, f"killed at {killed_at}; got {len(events)} events"
    assert len({e["event_id"] for e in events}) == len(events)
    assert ids[1:-1] == message_ids
    status = cli("provider", "list", env=env)
    assert "connected" in status.stdout


def test_missing_and_bad_settings_stop_with_a_clear_message(environ: dict[str, str]) -> None:
    without_redis = {k: v for k, v in environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "email_service", "worker"],
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"} | without_redis,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "REDIS_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr

    bad = cli("worker", env={**environ, "IMAP_CONNECTION_TIMEOUT_MS": "soon"})
    assert bad.returncode == 2
    assert "IMAP_CONNECTION_TIMEOUT_MS='soon' is not valid" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_provider_test_command_reports_success_and_failure(
    environ: dict[str, str], dovecot: DovecotServer, mail_user: MailUser
) -> None:
    provider_id = add_dovecot_provider(environ, dovecot, mail_user)
    ok = cli("provider", "test", provider_id, env=environ)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "IDLE" in ok.stdout and "INBOX" in ok.stdout and "OK" in ok.stdout
    changed = cli(
        "provider",
        "set-password",
        provider_id,
        "--password-stdin",
        env=environ,
        stdin="not-the-password\n",
    )
    assert changed.returncode == 0
    failed = cli("provider", "test", provider_id, env=environ)
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout and "rejected the login" in failed.stdout
    assert "not-the-password" not in failed.stdout + failed.stderr
    removed = cli("provider", "remove", provider_id, env=environ)
    assert removed.returncode == 0
    assert provider_id not in cli("provider", "list", env=environ).stdout


def test_events_tail_prints_events_and_dead_letters(
    environ: dict[str, str], redis_client: redis.Redis[bytes], stream: str
) -> None:
    payload = {
        "emailData": {
            "subject": "Hello",
            "from": {"email": "a@example.com"},
            "imap": {"folder": "INBOX", "uid": 7},
        }
    }
    redis_client.xadd(
        stream,
        {
            "event_id": "e1",
            "event_name": "INBOUND_EMAIL_RECEIVED",
            "tenant": TENANT_A,
            "payload_json": json.dumps(payload),
        },
    )
    redis_client.xadd(
        dead_letter_stream(stream),
        {
            "event_id": "e2",
            "tenant": TENANT_A,
            "folder": "INBOX",
            "uid": "8",
            "reason": "unparseable",
        },
    )
    text = cli("events", "tail", "--from-start", "--count", "1", env=environ)
    assert text.returncode == 0, text.stderr
    assert "INBOUND_EMAIL_RECEIVED" in text.stdout and "uid=7" in text.stdout
    as_json = cli("events", "tail", "--from-start", "--count", "1", "--json", env=environ)
    assert json.loads(as_json.stdout)["event_id"] == "e1"
    dead = cli("events", "tail", "--dlq", "--from-start", "--count", "1", env=environ)
    assert "dead letter" in dead.stdout and "reason=unparseable" in dead.stdout
