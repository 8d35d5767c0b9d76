"""Several worker processes share the providers of many tenants (real processes, Dovecot,
PostgreSQL, Redis): exactly one holder per provider, even shares, failover after SIGKILL."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text

from email_service.devserver.dovecot import DovecotServer
from tests.e2e.processes import FLEET_PROVIDERS, WorkerProcess, add_providers
from tests.helpers import make_message, stream_events, wait_for

pytestmark = pytest.mark.e2e

PROVIDERS = FLEET_PROVIDERS
LEASE_TTL_MS = 3000
REFRESH_MS = 500


@pytest.fixture
def fleet(environ: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    workers: list[WorkerProcess] = []
    yield workers
    for worker in workers:
        if worker.process.poll() is None:
            worker.kill()


def holders(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.email_provider_id, c.lease_owner, c.lease_expires_at > now() AS live, "
                "p.status FROM imap_email_provider_config c JOIN email_providers p "
                "ON p.id = c.email_provider_id AND p.tenant = c.tenant"
            )
        ).fetchall()
    return {row[0]: row[1] if row[2] and row[3] == "connected" else None for row in rows}


def balanced(engine: Engine, workers: int) -> Counter[str] | None:
    """The lease count per worker once every provider is held, connected, and shares are even."""
    owners = holders(engine)
    if any(owner is None for owner in owners.values()):
        return None
    counts = Counter(owner for owner in owners.values() if owner)
    even = PROVIDERS / workers
    if len(counts) != workers or any(abs(c - even) > 0.2 * even for c in counts.values()):
        return None
    return counts


def test_workers_share_providers_evenly_and_take_over_after_sigkill(
    environ: dict[str, str],
    engine: Engine,
    dovecot: DovecotServer,
    redis_client: redis.Redis[bytes],
    stream: str,
    fleet: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    env = {
        **environ,
        "IMAP_LEASE_TTL_MS": str(LEASE_TTL_MS),
        "IMAP_PROVIDER_REFRESH_MS": str(REFRESH_MS),
        "EMAIL_SERVICE_LOG_LEVEL": "warning",
    }
    users = add_providers(engine, environ, dovecot)
    for n in range(3):
        fleet.append(WorkerProcess(env, tmp_path / f"worker-{n}.log"))
    shares = wait_for(lambda: balanced(engine, 3), timeout_s=60, what="3 even shares")
    assert sum(shares.values()) == PROVIDERS

    fleet.append(WorkerProcess(env, tmp_path / "worker-3.log"))
    wait_for(lambda: balanced(engine, 4), timeout_s=60, what="4 even shares after a join")

    delivered: list[str] = []
    victim = fleet[0]
    for n, user in enumerate(users * 2):
        message_id = f"<failover-{n}@example.com>"
        dovecot.deliver(user, make_message(f"failover {n}", message_id=message_id))
        delivered.append(message_id)
        if n == PROVIDERS // 2:
            victim.kill()
            killed_at = time.monotonic()

    def taken_over() -> bool:  # every provider held by one of the three survivors
        owners = holders(engine)
        return all(owners.values()) and len(set(owners.values())) == 3

    wait_for(taken_over, timeout_s=60, what="takeover")
    takeover_s = time.monotonic() - killed_at
    # The dead worker's leases must expire first; then one refresh takes them, plus a
    # margin for logging in to Dovecot on a busy CI machine.
    assert takeover_s < (LEASE_TTL_MS + REFRESH_MS) / 1000 + 3, f"takeover took {takeover_s}"
    wait_for(lambda: balanced(engine, 3), timeout_s=60, what="3 even shares after SIGKILL")

    def published() -> list[dict[str, object]] | None:
        events = stream_events(redis_client, stream)
        return events if len(events) >= len(delivered) else None

    events = wait_for(published, timeout_s=60, what=f"{len(delivered)} events")
    time.sleep(0)  # the stream is read once more below; nothing else may arrive
    events = stream_events(redis_client, stream)
    ids = [e["payload"]["emailData"]["id"] for e in events]  # type: ignore[index]
    assert len({e["event_id"] for e in events}) == len(events), "an event was published twice"
    assert sorted(ids) == sorted(delivered), "a message is missing or doubled"
    for worker in fleet[1:]:
        assert worker.terminate() == 0
    with engine.connect() as connection:
        assert (
            connection.execute(
                text(
                    "SELECT count(*) FROM imap_email_provider_config WHERE lease_owner IS NOT NULL"
                )
            ).scalar()
            == 0
        ), "leases must be released on shutdown"


def test_two_replicas_with_three_providers_both_hold_some_and_stay_put(
    environ: dict[str, str],
    engine: Engine,
    dovecot: DovecotServer,
    tenant: str,
    fleet: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    """The first worker takes all three; the second joins and gets one (not none: the first
    is within target 2 + slack 1), and the counts then stay as they are."""
    env = {
        **environ,
        "IMAP_LEASE_TTL_MS": str(LEASE_TTL_MS),
        "IMAP_PROVIDER_REFRESH_MS": str(REFRESH_MS),
        "EMAIL_SERVICE_LOG_LEVEL": "warning",
    }
    add_providers(engine, environ, dovecot, tenants=[tenant], count=3)

    def shares() -> Counter[str] | None:
        owners = holders(engine)
        if len(owners) != 3 or any(owner is None for owner in owners.values()):
            return None
        return Counter(owner for owner in owners.values() if owner)

    fleet.append(WorkerProcess(env, tmp_path / "worker-0.log"))
    wait_for(lambda: (s := shares()) and list(s.values()) == [3], timeout_s=30, what="3 on one")
    fleet.append(WorkerProcess(env, tmp_path / "worker-1.log"))
    spread = wait_for(
        lambda: (s := shares()) and sorted(s.values()) == [1, 2] and s,
        timeout_s=30,
        what="the second worker holding one of the three",
    )
    fences = lease_fences(engine)
    time.sleep(4 * REFRESH_MS / 1000)  # an observation window of several refreshes
    assert shares() == spread, "leases moved between workers after they were spread"
    assert lease_fences(engine) == fences, "a lease was given back and taken again"


def lease_fences(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT email_provider_id, lease_fence FROM imap_email_provider_config")
        ).fetchall()
    return {row[0]: row[1] for row in rows}
