"""The stores against real PostgreSQL and a SQLite file: same behaviour on both."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, update

from email_service.errors import LeaseLost, ProviderNotFound, SecretUndecryptable
from email_service.model import (
    FolderCursor,
    FolderKey,
    ImapEndpoint,
    NewProvider,
    ProviderChanges,
    Security,
    password_secret_name,
)
from email_service.security.secretbox import SecretBox, generate_key
from email_service.store.cursors import CursorStore
from email_service.store.fencing import check_fence
from email_service.store.providers import ProviderStore
from email_service.store.schema import email_providers
from email_service.store.secrets import SecretStore
from tests.helpers import TENANT_A, TENANT_B

pytestmark = pytest.mark.integration


def new_provider(tenant: str, folders: tuple[str, ...] = ("INBOX", "Support")) -> NewProvider:
    return NewProvider(
        tenant=tenant,
        name="Support",
        mailbox="support@example.com",
        username="support",
        endpoint=ImapEndpoint("imap.example.com", 993, Security.TLS),
        folders=folders,
    )


def test_provider_round_trip_and_tenant_scoping(engine: Engine) -> None:
    store = ProviderStore(engine)
    provider_id = store.add_provider(new_provider(TENANT_A))
    store.add_provider(new_provider(TENANT_B))
    loaded = store.find_provider(provider_id, TENANT_A)
    assert loaded.folders == ("INBOX", "Support")
    assert loaded.endpoint.security is Security.TLS
    assert loaded.status == "pending"
    assert [p.tenant for p in store.list_providers(TENANT_A)] == [TENANT_A]
    with pytest.raises(ProviderNotFound):
        store.find_provider(provider_id, TENANT_B)
    with pytest.raises(ProviderNotFound):
        store.remove_provider(provider_id, TENANT_B)
    assert len(store.load_active_providers()) == 2


def test_cursor_moves_forward_only_and_mirrors_folder_state(engine: Engine) -> None:
    store = ProviderStore(engine)
    provider_id = store.add_provider(new_provider(TENANT_A))
    cursors = CursorStore(engine)
    inbox = FolderKey(TENANT_A, provider_id, "INBOX")
    support = FolderKey(TENANT_A, provider_id, "Support")
    assert cursors.load_cursor(inbox) is None
    cursors.save_baseline(inbox, FolderCursor(7, 10), fence=0)
    cursors.save_baseline(support, FolderCursor(3, 1), fence=0)
    cursors.advance_cursor(inbox, FolderCursor(7, 15), fence=0)
    cursors.advance_cursor(inbox, FolderCursor(7, 12), fence=0)  # never backwards
    cursors.advance_cursor(inbox, FolderCursor(8, 99), fence=0)  # other UIDVALIDITY: no-op
    assert cursors.load_cursor(inbox) == FolderCursor(7, 15)
    cursors.save_baseline(inbox, FolderCursor(8, 4), fence=0)  # re-baseline replaces
    assert cursors.load_cursor(inbox) == FolderCursor(8, 4)
    with engine.connect() as connection:
        state = connection.exec_driver_sql(
            "SELECT folder_state FROM imap_email_provider_config"
        ).scalar_one()
    if isinstance(state, str):  # SQLite returns JSON text through the raw driver
        import json

        state = json.loads(state)
    assert {k: (v["uid_validity"], v["last_uid"]) for k, v in state.items()} == {
        "INBOX": (8, 4),
        "Support": (3, 1),
    }


def test_stale_fence_moves_nothing(engine: Engine) -> None:
    provider_id = ProviderStore(engine).add_provider(new_provider(TENANT_A))
    cursors = CursorStore(engine)
    key = FolderKey(TENANT_A, provider_id, "INBOX")
    cursors.save_baseline(key, FolderCursor(7, 10), fence=0)
    with engine.begin() as connection:  # another worker took the lease
        connection.exec_driver_sql("UPDATE imap_email_provider_config SET lease_fence = 1")
    with pytest.raises(LeaseLost):
        cursors.advance_cursor(key, FolderCursor(7, 20), fence=0)
    with pytest.raises(LeaseLost):
        cursors.save_baseline(key, FolderCursor(9, 0), fence=0)
    assert cursors.load_cursor(key) == FolderCursor(7, 10)
    cursors.advance_cursor(key, FolderCursor(7, 20), fence=1)
    assert cursors.load_cursor(key) == FolderCursor(7, 20)


def test_secrets_are_encrypted_at_rest_and_removed_with_the_provider(engine: Engine) -> None:
    key = generate_key()
    providers = ProviderStore(engine)
    secrets = SecretStore(engine, SecretBox((key,)))
    provider_id = providers.add_provider(new_provider(TENANT_A))
    name = password_secret_name(provider_id)
    secrets.save_secret(TENANT_A, name, "correct horse battery")
    secrets.save_secret(TENANT_A, "imap_password_other", "keep me")
    with engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT ciphertext FROM email_secrets").scalars().all()
    assert all(b"correct horse" not in bytes(c) for c in stored)
    assert secrets.load_secret(TENANT_A, name) == "correct horse battery"
    with pytest.raises(SecretUndecryptable):
        SecretStore(engine, SecretBox((generate_key(),))).load_secret(TENANT_A, name)
    rotated = SecretStore(engine, SecretBox((generate_key(), key)))
    assert rotated.reencrypt_all() == 2
    inbox = FolderKey(TENANT_A, provider_id, "INBOX")
    CursorStore(engine).save_baseline(inbox, FolderCursor(1, 1), 0)
    providers.remove_provider(provider_id, TENANT_A)
    with pytest.raises(SecretUndecryptable, match="not stored"):
        rotated.load_secret(TENANT_A, name)
    assert rotated.load_secret(TENANT_A, "imap_password_other") == "keep me"
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM imap_folder_state").scalar() == 0


@pytest.mark.parametrize("change", ["remove", "update"])
def test_api_changes_wait_for_a_workers_fenced_write_instead_of_deadlocking(
    engine: Engine, change: str
) -> None:
    """A worker's fenced write locks the config row, then the provider row (save_status,
    mark_synced); the API's removal and update take the same order, so one waits for the
    other. In the other order PostgreSQL aborts one of them as a deadlock (a 503 of the
    API, seen in CI as a DELETE answered 503 while a worker held the provider)."""
    store = ProviderStore(engine)
    provider_id = store.add_provider(new_provider(TENANT_A))
    outcome: list[BaseException | None] = []

    def api_call() -> None:
        try:
            if change == "remove":
                store.remove_provider(provider_id, TENANT_A)
            else:
                store.update_provider(provider_id, TENANT_A, ProviderChanges(name="Renamed"))
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    with engine.begin() as worker:
        check_fence(worker, TENANT_A, provider_id, 0)  # the worker's first lock
        thread = threading.Thread(target=api_call)
        thread.start()
        time.sleep(0.5)  # the API call is now waiting for a lock (or, before, took one)
        worker.execute(
            update(email_providers)
            .where(email_providers.c.id == provider_id)
            .values(last_sync_at=datetime.now(UTC))
        )
    thread.join(timeout=30)
    assert outcome == [None]
    if change == "remove":
        assert store.list_providers(TENANT_A) == []
    else:
        assert store.load_record(provider_id, TENANT_A).config.name == "Renamed"
