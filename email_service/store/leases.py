"""Provider leases and the worker registry (shell).

A lease is the triple ``lease_owner``, ``lease_expires_at`` (database clock) and
``lease_fence`` on ``imap_email_provider_config``. Taking a free or expired lease increments
the fence; every cursor and status write checks it (``cursors.py``), so a worker that lost a
lease can move nothing. Workers register in ``email_service_workers`` and heartbeat, so each
can compute its fair share of the active providers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, and_, delete, func, or_, select, update

from email_service.model import REAUTH_REQUIRED
from email_service.store.dbclock import db_now, db_now_plus_ms
from email_service.store.engine import transaction
from email_service.store.schema import (
    email_providers,
    email_service_workers,
    imap_email_provider_config,
)

_config = imap_email_provider_config
_workers = email_service_workers

#: Worker rows whose heartbeat stopped this long ago are deleted (they are ignored as soon
#: as they expire; this only keeps the table small).
DEAD_WORKER_RETENTION_MS = 3600 * 1000

ProviderRef = tuple[str, str]  # tenant, provider id


@dataclass(frozen=True)
class LeaseView:
    """Who holds a provider's lease, as the database sees it now."""

    tenant: str
    provider_id: str
    owner: str | None
    fence: int
    free: bool  #: no owner, or the lease has expired


class LeaseStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- workers --------------------------------------------------------------------------

    def heartbeat(self, worker_id: str, ttl_ms: int) -> None:
        """Register ``worker_id`` or extend its life by ``ttl_ms`` from now."""
        with transaction(self._engine) as connection:
            changed = connection.execute(
                update(_workers)
                .where(_workers.c.worker_id == worker_id)
                .values(heartbeat_at=db_now(), expires_at=db_now_plus_ms(ttl_ms))
            ).rowcount
            if changed == 0:
                connection.execute(
                    _workers.insert().values(
                        worker_id=worker_id,
                        started_at=db_now(),
                        heartbeat_at=db_now(),
                        expires_at=db_now_plus_ms(ttl_ms),
                    )
                )
            connection.execute(
                delete(_workers).where(
                    _workers.c.expires_at < db_now_plus_ms(-DEAD_WORKER_RETENTION_MS)
                )
            )

    def count_live_workers(self) -> int:
        with transaction(self._engine) as connection:
            count = connection.execute(
                select(func.count()).select_from(_workers).where(_workers.c.expires_at > db_now())
            ).scalar_one()
        return int(count)

    def remove_worker(self, worker_id: str) -> None:
        with transaction(self._engine) as connection:
            connection.execute(delete(_workers).where(_workers.c.worker_id == worker_id))

    # -- leases ---------------------------------------------------------------------------

    def list_leases(self) -> list[LeaseView]:
        """Lease state of every provider a worker should run: active, not paused and not
        parked for re-authorisation (the same filter as ``load_active_providers``)."""
        free = or_(
            _config.c.lease_owner.is_(None),
            _config.c.lease_expires_at.is_(None),
            _config.c.lease_expires_at < db_now(),
        )
        query = (
            select(
                _config.c.tenant,
                _config.c.email_provider_id,
                _config.c.lease_owner,
                _config.c.lease_fence,
                free.label("free"),
            )
            .join(
                email_providers,
                and_(
                    email_providers.c.id == _config.c.email_provider_id,
                    email_providers.c.tenant == _config.c.tenant,
                ),
            )
            .where(
                email_providers.c.is_active.is_(True),
                email_providers.c.is_paused.is_(False),
                email_providers.c.status != REAUTH_REQUIRED,
            )
        )
        with transaction(self._engine) as connection:
            return [
                LeaseView(
                    row.tenant,
                    row.email_provider_id,
                    row.lease_owner,
                    row.lease_fence,
                    bool(row.free),
                )
                for row in connection.execute(query)
            ]

    def take_lease(self, ref: ProviderRef, worker_id: str, ttl_ms: int) -> int | None:
        """Take the lease if it is free or expired; return the new fence, or None."""
        tenant, provider_id = ref
        with transaction(self._engine) as connection:
            fence = connection.execute(
                update(_config)
                .where(
                    _config.c.tenant == tenant,
                    _config.c.email_provider_id == provider_id,
                    or_(
                        _config.c.lease_owner.is_(None),
                        _config.c.lease_expires_at.is_(None),
                        _config.c.lease_expires_at < db_now(),
                    ),
                )
                .values(
                    lease_owner=worker_id,
                    lease_expires_at=db_now_plus_ms(ttl_ms),
                    lease_fence=_config.c.lease_fence + 1,
                )
                .returning(_config.c.lease_fence)
            ).scalar()
        return None if fence is None else int(fence)

    def renew_leases(self, worker_id: str, ttl_ms: int) -> dict[ProviderRef, int]:
        """Extend every lease ``worker_id`` still owns; return them with their fences.

        Only the owner's own leases match, so a lease another worker took (which changed
        the owner and the fence) is never extended by us.
        """
        with transaction(self._engine) as connection:
            rows = connection.execute(
                update(_config)
                .where(_config.c.lease_owner == worker_id)
                .values(lease_expires_at=db_now_plus_ms(ttl_ms))
                .returning(_config.c.tenant, _config.c.email_provider_id, _config.c.lease_fence)
            ).fetchall()
        return {(row.tenant, row.email_provider_id): int(row.lease_fence) for row in rows}

    def release_leases(self, worker_id: str, refs: list[ProviderRef] | None = None) -> int:
        """Give up leases (all of ``worker_id``'s when ``refs`` is None); return how many."""
        conditions = [_config.c.lease_owner == worker_id]
        released = 0
        with transaction(self._engine) as connection:
            if refs is None:
                return int(
                    connection.execute(
                        update(_config)
                        .where(*conditions)
                        .values(lease_owner=None, lease_expires_at=None)
                    ).rowcount
                )
            for tenant, provider_id in refs:
                released += connection.execute(
                    update(_config)
                    .where(
                        *conditions,
                        _config.c.tenant == tenant,
                        _config.c.email_provider_id == provider_id,
                    )
                    .values(lease_owner=None, lease_expires_at=None)
                ).rowcount
        return released
