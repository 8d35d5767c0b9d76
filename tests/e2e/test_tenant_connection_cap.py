"""IMAP_MAX_CONNECTIONS_PER_TENANT holds across all of a worker's providers and across
workers: two worker processes, twelve providers of one tenant, a cap of five (Dovecot,
PostgreSQL, Redis). The connections to Dovecot are counted from the kernel's table."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text

from email_service.devserver.dovecot import DovecotServer
from email_service.store.connection_records import ConnectionRecordStore
from tests.e2e.processes import WorkerProcess, add_providers
from tests.helpers import count_connections_to, make_message, wait_for, wait_for_stream_entries

pytestmark = pytest.mark.e2e

PROVIDERS = 12
CAP = 5
#: How long the connections are sampled once both workers hold their shares.
SAMPLE_S = 4


def owners(engine: Engine, tenant: str) -> set[str] | None:
    """The workers holding the tenant's providers, once every one is held and recorded."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT lease_owner, lease_connections FROM imap_email_provider_config "
                "WHERE tenant = :t AND lease_expires_at > now()"
            ),
            {"t": tenant},
        ).fetchall()
    if len(rows) < PROVIDERS or any(row[1] is None for row in rows):
        return None
    return {row[0] for row in rows}


def test_two_workers_keep_one_tenant_within_its_connection_cap(
    environ: dict[str, str],
    engine: Engine,
    dovecot: DovecotServer,
    redis_client: redis.Redis[bytes],
    stream: str,
    tenant: str,
    tmp_path: Path,
) -> None:
    users = add_providers(engine, environ, dovecot, count=PROVIDERS, tenant=tenant)
    env = {
        **environ,
        "IMAP_MAX_CONNECTIONS_PER_TENANT": str(CAP),
        "IMAP_POLL_INTERVAL_MS": "500",
        "EMAIL_SERVICE_LOG_LEVEL": "warning",
    }
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in range(2)]
    try:
        wait_for(
            lambda: (held := owners(engine, tenant)) is not None and len(held) == 2,
            timeout_s=40,
            what="both workers holding the tenant's providers",
        )
        samples = []
        until = time.monotonic() + SAMPLE_S
        while time.monotonic() < until:
            samples.append(count_connections_to(dovecot.imaps_port))
            time.sleep(0.05)
        assert max(samples) <= CAP, f"connections held: {sorted(set(samples))}"
        assert max(samples) > 0
        assert ConnectionRecordStore(engine).held(tenant) <= CAP

        for user in users:  # every mailbox is still followed: nothing is lost
            dovecot.deliver(user, make_message(f"to {user}"))
        events = wait_for_stream_entries(redis_client, stream, PROVIDERS, timeout_s=40)
        assert len({e["payload"]["providerId"] for e in events}) == PROVIDERS
        assert max(count_connections_to(dovecot.imaps_port) for _ in range(20)) <= CAP
    finally:
        for worker in workers:
            assert worker.terminate() == 0
