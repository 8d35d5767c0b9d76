"""Tenant isolation: another tenant's provider id is answered 404 everywhere, and nothing moves."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from email_service.devserver.dovecot import DovecotServer
from email_service.model import FolderCursor, FolderKey
from email_service.store.cursors import CursorStore
from tests.conftest import MailUser
from tests.integration.api_harness import ApiHarness, provider_body

pytestmark = pytest.mark.integration

PROVIDERS = "/api/v1/providers"

#: Every call that names a provider, with a body that would be valid for the owner.
CALLS: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("PATCH", "", {"name": "Taken over", "host": "127.0.0.1", "password": "stolen"}),
    ("DELETE", "", None),
    ("POST", "/test", None),
    ("GET", "/folders", None),
    ("GET", "/status", None),
    ("GET", "/status?live=true", None),
    ("POST", "/resync", {"folders": ["INBOX"]}),
    ("POST", "/resync", None),
    ("POST", "/reconnect", None),
    ("POST", "/pause", None),
    ("POST", "/resume", None),
    ("GET", "/messages/INBOX/1/1/raw", None),
    ("GET", "/messages/INBOX/1/1/parts/2", None),
]
TABLES = ("email_providers", "imap_email_provider_config", "imap_folder_state", "email_secrets")


def snapshot(api: ApiHarness, stats_key: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    with api.parts.engine.connect() as connection:
        for table in TABLES:
            rows = connection.execute(text(f"SELECT * FROM {table}")).mappings().all()  # noqa: S608
            state[table] = sorted(repr(sorted(dict(row).items())) for row in rows)
    state["stats"] = api.parts.redis_client.hgetall(stats_key)
    return state


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    CALLS,
    ids=[f"{m} {s or '/'}" + (" body" if b else "") for m, s, b in CALLS],
)
def test_another_tenants_provider_is_not_found_and_unchanged(
    api: ApiHarness,
    dovecot: DovecotServer,
    mail_user: MailUser,
    method: str,
    suffix: str,
    body: Any,
) -> None:
    owner, intruder = str(uuid.uuid4()), str(uuid.uuid4())
    created = api.call("POST", PROVIDERS, tenant=owner, json_body=provider_body(dovecot, mail_user))
    provider_id = created.json()["id"]
    CursorStore(api.parts.engine).save_baseline(
        FolderKey(owner, provider_id, "INBOX"), FolderCursor(9, 4), 0
    )
    stats_key = f'email-service:stats:["{owner}", "{provider_id}"]'
    api.parts.redis_client.hset(stats_key, mapping={"events:INBOX": 4, "dead_letters:INBOX": 1})
    # the intruder has a provider of its own, so its calls are otherwise fine
    api.call("POST", PROVIDERS, tenant=intruder, json_body=provider_body(dovecot, mail_user))
    before = snapshot(api, stats_key)

    reply = api.call(method, f"{PROVIDERS}/{provider_id}{suffix}", tenant=intruder, json_body=body)

    assert reply.status == 404, reply
    assert reply.json() == {"error": "not_found", "message": "no such provider for this tenant"}
    assert snapshot(api, stats_key) == before
    assert provider_id not in api.call("GET", PROVIDERS, tenant=intruder).body.decode()
    owner_view = api.call("GET", f"{PROVIDERS}/{provider_id}", tenant=owner)
    assert owner_view.status == 200 and owner_view.json()["name"] == "Support"
    api.parts.redis_client.delete(stats_key)


def test_unknown_and_foreign_ids_answer_alike(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser
) -> None:
    owner, intruder = str(uuid.uuid4()), str(uuid.uuid4())
    created = api.call("POST", PROVIDERS, tenant=owner, json_body=provider_body(dovecot, mail_user))
    foreign = api.call("GET", f"{PROVIDERS}/{created.json()['id']}", tenant=intruder)
    unknown = api.call("GET", f"{PROVIDERS}/00000000-0000-0000-0000-000000000000", tenant=intruder)
    too_long = api.call("GET", f"{PROVIDERS}/{'x' * 65}", tenant=intruder)
    assert foreign.status == unknown.status == too_long.status == 404
    assert foreign.body == unknown.body == too_long.body
