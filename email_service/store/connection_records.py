"""The IMAP connections each worker holds per provider, on the lease rows (shell).

``IMAP_MAX_CONNECTIONS_PER_TENANT`` holds across every worker: each records, on the
``lease_connections`` column of the providers it holds, the connections its plan may hold
for them, and plans a tenant within what the others recorded. ``exchange`` does both in one
transaction under a per-tenant lock, so two workers cannot both grow into the same room.
Only live leases count (owner set, not expired by the database clock): a dead worker's
records stop counting when its leases expire, the moment its connections are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, func, select, update

from email_service.store.dbclock import db_now
from email_service.store.engine import transaction
from email_service.store.schema import imap_email_provider_config
from email_service.store.tenant_locks import CONNECTION_CAP, lock_tenants

_config = imap_email_provider_config

ProviderRef = tuple[str, str]  # tenant, provider id
#: Given what the other workers hold per tenant: what this worker records per provider.
Planner = Callable[[Mapping[str, int]], Mapping[ProviderRef, int]]


class ConnectionRecordStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def exchange(
        self, worker_id: str, tenants: Collection[str], plan: Planner
    ) -> Mapping[ProviderRef, int]:
        """Lock ``tenants``, read what the other workers hold for each, let ``plan`` decide
        this worker's records from that, and write them (on rows it still owns)."""
        with transaction(self._engine) as connection:
            lock_tenants(connection, CONNECTION_CAP, tenants)
            records = plan(self._held_elsewhere(connection, worker_id, tenants))
            _write(connection, worker_id, records)
        return records

    def record(self, worker_id: str, records: Mapping[ProviderRef, int]) -> None:
        """Write records that only went down (after their connections were stopped)."""
        with transaction(self._engine) as connection:
            _write(connection, worker_id, records)

    def held(self, tenant: str) -> int:
        """Connections recorded for ``tenant`` by every live lease."""
        return self._sum(_config.c.tenant == tenant)

    def held_for(self, tenant: str, provider_id: str) -> tuple[int, int]:
        """Connections recorded by live leases for one provider, and for its whole tenant
        (what the API's downloads must fit beside)."""
        with transaction(self._engine) as connection:
            row = connection.execute(
                select(
                    func.coalesce(
                        func.sum(_config.c.lease_connections).filter(
                            _config.c.email_provider_id == provider_id
                        ),
                        0,
                    ),
                    func.coalesce(func.sum(_config.c.lease_connections), 0),
                ).where(_config.c.tenant == tenant, *_live())
            ).one()
        return int(row[0]), int(row[1])

    def _sum(self, *where: ColumnElement[bool]) -> int:
        with transaction(self._engine) as connection:
            total = connection.execute(
                select(func.coalesce(func.sum(_config.c.lease_connections), 0)).where(
                    *where, *_live()
                )
            ).scalar_one()
        return int(total)

    @staticmethod
    def _held_elsewhere(
        connection: Connection, worker_id: str, tenants: Collection[str]
    ) -> dict[str, int]:
        if not tenants:
            return {}
        rows = connection.execute(
            select(_config.c.tenant, func.sum(_config.c.lease_connections))
            .where(
                _config.c.tenant.in_(sorted(tenants)),
                _config.c.lease_owner != worker_id,
                *_live(),
            )
            .group_by(_config.c.tenant)
        )
        return {row[0]: int(row[1] or 0) for row in rows}


def _live() -> tuple[ColumnElement[bool], ...]:
    return (_config.c.lease_owner.is_not(None), _config.c.lease_expires_at > db_now())


def _write(connection: Connection, worker_id: str, records: Mapping[ProviderRef, int]) -> None:
    if not records:
        return
    connection.execute(
        update(_config)
        .where(
            _config.c.tenant == bindparam("t"),
            _config.c.email_provider_id == bindparam("p"),
            _config.c.lease_owner == worker_id,
        )
        .values(lease_connections=bindparam("n")),
        [{"t": t, "p": p, "n": n} for (t, p), n in sorted(records.items())],
    )
