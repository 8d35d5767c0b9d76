"""Per-tenant locks held until the transaction ends (shell).

PostgreSQL: ``pg_advisory_xact_lock(namespace, hashtext(tenant))``, so two transactions
that lock the same tenant for the same purpose run one after the other. SQLite needs none:
every transaction there starts with ``BEGIN IMMEDIATE`` and so excludes all other writers.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, func, select

#: Lock namespaces, one per purpose, so unrelated work on one tenant does not wait.
PROVIDER_CAP = 1
CONNECTION_CAP = 2


def lock_tenants(connection: Connection, namespace: int, tenants: Iterable[str]) -> None:
    """Lock ``tenants`` (in sorted order, so two lockers never deadlock)."""
    if connection.dialect.name != "postgresql":
        return
    for tenant in sorted(set(tenants)):
        connection.execute(select(func.pg_advisory_xact_lock(namespace, func.hashtext(tenant))))
