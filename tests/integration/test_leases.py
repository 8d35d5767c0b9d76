"""Leases and the worker registry on PostgreSQL and SQLite, judged by the database clock."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import Engine, update

from email_service.errors import LeaseLost
from email_service.model import (
    REAUTH_REQUIRED,
    FolderCursor,
    FolderKey,
)
from email_service.store.cursors import CursorStore
from email_service.store.leases import LeaseStore
from email_service.store.providers import ProviderStore
from email_service.store.schema import email_providers
from tests.helpers import add_bare_provider

pytestmark = pytest.mark.integration


def test_take_is_exclusive_and_changes_the_fence(engine: Engine) -> None:
    leases = LeaseStore(engine)
    ref = add_bare_provider(engine)
    first = leases.take_lease(ref, "w1", ttl_ms=60_000)
    assert first == 1
    assert leases.take_lease(ref, "w2", ttl_ms=60_000) is None
    assert leases.renew_leases("w1", 60_000) == {ref: 1}
    assert leases.renew_leases("w2", 60_000) == {}
    assert leases.release_leases("w1") == 1
    assert leases.take_lease(ref, "w2", ttl_ms=60_000) == 2


def test_expired_lease_is_taken_over_and_the_old_owner_can_move_nothing(engine: Engine) -> None:
    leases, cursors = LeaseStore(engine), CursorStore(engine)
    ref = add_bare_provider(engine)
    key = FolderKey(ref[0], ref[1], "INBOX")
    old_fence = leases.take_lease(ref, "w1", ttl_ms=200)
    assert old_fence is not None
    cursors.save_baseline(key, FolderCursor(1, 5), old_fence)
    deadline = time.monotonic() + 5
    new_fence = None
    while new_fence is None and time.monotonic() < deadline:
        new_fence = leases.take_lease(ref, "w2", ttl_ms=60_000)
        time.sleep(0.05)
    assert new_fence == old_fence + 1
    with pytest.raises(LeaseLost):
        cursors.advance_cursor(key, FolderCursor(1, 9), old_fence)
    assert leases.renew_leases("w1", 60_000) == {}  # the old owner learns it lost the lease
    cursors.advance_cursor(key, FolderCursor(1, 9), new_fence)
    assert cursors.load_cursor(key) == FolderCursor(1, 9)


def test_worker_registry_counts_only_live_workers(engine: Engine) -> None:
    leases = LeaseStore(engine)
    leases.heartbeat("a", ttl_ms=60_000)
    leases.heartbeat("b", ttl_ms=60_000)
    leases.heartbeat("c", ttl_ms=100)
    leases.heartbeat("a", ttl_ms=60_000)
    deadline = time.monotonic() + 5
    while leases.count_live_workers() != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leases.count_live_workers() == 2
    leases.remove_worker("b")
    assert leases.count_live_workers() == 1


def test_list_leases_shows_free_and_held(engine: Engine) -> None:
    leases = LeaseStore(engine)
    held, free = add_bare_provider(engine), add_bare_provider(engine)
    leases.take_lease(held, "w1", ttl_ms=60_000)
    views = {(v.tenant, v.provider_id): v for v in leases.list_leases()}
    assert views[held].owner == "w1" and not views[held].free
    assert views[free].owner is None and views[free].free


def test_a_provider_parked_for_reauthorisation_is_not_offered_for_a_lease(
    engine: Engine,
) -> None:
    """``list_leases`` filters like ``load_active_providers``: a parked provider is neither
    taken (and dropped again, every refresh) nor counted in the fair share."""
    leases = LeaseStore(engine)
    tenant = str(uuid.uuid4())
    active, parked = add_bare_provider(engine, tenant), add_bare_provider(engine, tenant)
    with engine.begin() as connection:
        connection.execute(
            update(email_providers)
            .where(email_providers.c.id == parked[1], email_providers.c.tenant == tenant)
            .values(status=REAUTH_REQUIRED)
        )
    listed = [(v.tenant, v.provider_id) for v in leases.list_leases() if v.tenant == tenant]
    assert listed == [active]
    loaded = [(p.tenant, p.id) for p in ProviderStore(engine).load_active_providers()]
    assert [ref for ref in loaded if ref[0] == tenant] == listed
