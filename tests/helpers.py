"""Helpers shared by integration and end-to-end tests: messages and waiting with deadlines."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from sqlalchemy import Engine, text

from email_service.devserver.connections import count_connections_to  # noqa: F401 - for the tests
from email_service.devserver.samples import make_message  # noqa: F401 - for the tests
from email_service.model import ImapEndpoint, NewProvider, Security
from email_service.security.secretbox import SecretBox
from email_service.settings import DEAD_LETTER_STREAM_PREFIX
from email_service.store.provider_admin import ProviderAdmin, ProviderSecrets
from email_service.store.providers import ProviderStore

T = TypeVar("T")

#: Pause between checks while waiting for a condition; short, since tests wait often.
POLL_S = 0.05


def wait_for(condition: Callable[[], T], *, timeout_s: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy, or fail saying ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(POLL_S)


def stream_events(client: redis.Redis[bytes], stream: str) -> list[dict[str, Any]]:
    """Every entry of ``stream`` with its payload decoded."""
    events = []
    for entry_id, fields in client.xrange(stream):
        decoded = {k.decode(): v.decode() for k, v in fields.items()}
        decoded["id"] = entry_id.decode()
        if "payload_json" in decoded:
            decoded["payload"] = json.loads(decoded["payload_json"])
        events.append(decoded)
    return events


def wait_for_stream_entries(
    client: redis.Redis[bytes], stream: str, count: int, *, timeout_s: float = 10
) -> list[dict[str, Any]]:
    """At least ``count`` entries on ``stream`` (all of them returned)."""
    return wait_for(
        lambda: (e := stream_events(client, stream)) and len(e) >= count and e,
        timeout_s=timeout_s,
        what=f"{count} entries on {stream}",
    )


def subjects(events: list[dict[str, Any]]) -> list[str]:
    return [e["payload"]["emailData"]["subject"] for e in events if "payload" in e]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


#: Tenant ids for tests that need fixed ones: tenant ids are UUIDs (DESIGN.md section 3).
TENANT_A = "6f1f3d2c-8a4b-4c5d-9e6f-0a1b2c3d4e5f"
TENANT_B = "0b9e8d7c-6f5a-4b3c-8d2e-1f0a9b8c7d6e"
#: A fixed version-4 UUID for tests that pass the randomness of execution ids in.
RANDOM_UUID = "3d7e1c9a-2b4f-4a6e-8c1d-5f9b0e2a7c4d"


def dead_letter_stream(stream: str) -> str:
    """The default dead-letter stream of ours when the events go to ``stream``."""
    return DEAD_LETTER_STREAM_PREFIX + stream


def entry_fields(entry: dict[str, Any]) -> dict[str, str]:
    """The stream fields of an entry from ``stream_events`` (without its id and decoding)."""
    return {k: v for k, v in entry.items() if k not in ("id", "payload")}


#: A dead letter of the product's consumer, in its own layout (DESIGN.md section 3): what
#: our tools must never read, change or count.
CONSUMER_DEAD_LETTER = {
    "original_message": json.dumps({"event_id": "x", "payload_json": "{}"}),
    "error_message": "schema validation failed",
    "error_stack": "ValidationError: ...",
    "source_stream": "workflow:events:global",
    "original_id": "1700000000000-0",
    "moved_at": "2026-01-01T00:00:00.000Z",
}


def add_provider(
    engine: Engine,
    secret_key: str,
    new: NewProvider,
    *,
    password: str | None = None,
    client_secret: str | None = None,
) -> str:
    """Create ``new`` with its secrets through ``ProviderAdmin``, as the API does; its id.

    Without the tenant's provider cap, so a test can set up as many as it needs.
    """
    admin = ProviderAdmin.over(engine, SecretBox((secret_key,)), max_providers_per_tenant=2**31)
    return admin.create(new, ProviderSecrets(password=password, client_secret=client_secret))


def add_bare_provider(engine: Engine, tenant: str = TENANT_A) -> tuple[str, str]:
    """A provider row with no secret, for the lease and connection-record tests; its ref."""
    provider_id = ProviderStore(engine).add_provider(
        NewProvider(
            tenant=tenant,
            name="n",
            mailbox="m@x",
            username="u",
            endpoint=ImapEndpoint("h", 993, Security.TLS),
        )
    )
    return tenant, provider_id


def provider_row(engine: Engine, provider_id: str, tenant: str) -> dict[str, Any]:
    """The provider's status, error and folder state as the worker last wrote them."""
    with engine.connect() as connection:
        row = (
            connection.exec_driver_sql(
                "SELECT p.status, p.error_message, c.last_error, c.folder_state "
                "FROM email_providers p JOIN imap_email_provider_config c "
                "ON c.email_provider_id = p.id AND c.tenant = p.tenant "
                "WHERE p.id = %(id)s AND p.tenant = %(tenant)s",
                {"id": provider_id, "tenant": tenant},
            )
            .mappings()
            .one()
        )
    return dict(row)


def fail_writes_to(connection: Any, table: str, operation: str) -> None:
    """A trigger that makes every ``operation`` on ``table`` fail, as a broken disk would."""
    connection.execute(
        text(
            "CREATE FUNCTION refuse_write() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'write refused by the test'; END $$"
        )
    )
    connection.execute(
        text(
            f"CREATE TRIGGER refuse_write BEFORE {operation} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_write()"
        )
    )
