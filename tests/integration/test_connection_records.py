"""Connections recorded on lease rows, on PostgreSQL and SQLite: a worker sees what the
others hold for a tenant (live leases only) and writes only rows it owns."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest
from sqlalchemy import Engine

from email_service.store.connection_records import ConnectionRecordStore
from email_service.store.leases import LeaseStore
from tests.helpers import add_bare_provider, wait_for

pytestmark = pytest.mark.integration

#: A lease that expires during the test, long enough that a loaded machine still reads it live
#: (300 ms was not: the test failed once under load).
SHORT_TTL_MS = 3000


def test_others_records_count_while_their_leases_live(engine: Engine) -> None:
    tenant, other_tenant = str(uuid.uuid4()), str(uuid.uuid4())
    leases, records = LeaseStore(engine), ConnectionRecordStore(engine)
    mine, theirs, short, foreign = (
        add_bare_provider(engine, t) for t in (tenant, tenant, tenant, other_tenant)
    )
    leases.take_lease(mine, "w1", ttl_ms=60_000)
    leases.take_lease(theirs, "w2", ttl_ms=60_000)
    leases.take_lease(short, "w3", ttl_ms=SHORT_TTL_MS)
    leases.take_lease(foreign, "w2", ttl_ms=60_000)
    records.exchange("w2", [tenant, other_tenant], lambda _seen: {theirs: 4, foreign: 9, mine: 7})
    records.exchange("w3", [tenant], lambda _seen: {short: 2})
    seen: list[dict[str, int]] = []

    def plan(elsewhere: Mapping[str, int]) -> dict[tuple[str, str], int]:
        seen.append(dict(elsewhere))
        return {mine: 3}

    records.exchange("w1", [tenant], plan)
    assert seen == [{tenant: 6}]  # w2's 4 and w3's 2; w2 could not write w1's row
    assert records.held(tenant) == 3 + 4 + 2
    # w3's lease expires (database clock)
    wait_for(lambda: records.held(tenant) == 3 + 4, timeout_s=10, what="w3's lease to expire")
    records.record("w1", {mine: 1})
    assert records.held(tenant) == 1 + 4
    leases.release_leases("w2")
    assert records.held(tenant) == 1 and records.held(other_tenant) == 0
