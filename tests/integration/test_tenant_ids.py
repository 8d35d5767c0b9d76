"""Tenant ids are UUIDs: the writers refuse others, the CLI says so, and rows written before
(or by the product itself) are reported by ``email-service check`` and left unmonitored by
the worker instead of being published into the consumer's rejection."""

from __future__ import annotations

import uuid

import pytest
import redis
from sqlalchemy import insert, select

from email_service.devserver.dovecot import DovecotServer
from email_service.errors import TenantIdInvalid
from email_service.model import ImapEndpoint, NewProvider, Security, password_secret_name
from email_service.settings import Settings
from email_service.store.engine import transaction
from email_service.store.schema import email_providers, email_secrets, imap_email_provider_config
from tests.conftest import MailUser
from tests.e2e.processes import cli
from tests.helpers import make_message, stream_events, wait_for, wait_for_stream_entries
from tests.integration.service import InProcessWorker


def test_the_writers_refuse_a_tenant_id_that_is_not_a_uuid(worker: InProcessWorker) -> None:
    endpoint = ImapEndpoint("imap.example.com", 993, Security.TLS)
    new = NewProvider("acme", "Support", "s@example.com", endpoint, "s")

    with pytest.raises(TenantIdInvalid, match="not a UUID"):
        worker.parts.providers.add_provider(new)
    with pytest.raises(TenantIdInvalid, match="not a UUID"):
        worker.parts.secrets.save_secret("acme", "imap_password_x", "pw")


def test_the_cli_refuses_a_tenant_id_that_is_not_a_uuid(environ: dict[str, str]) -> None:
    added = cli(
        "provider", "add", "--tenant", "acme", "--name", "n", "--mailbox", "s@example.com",
        "--host", "imap.example.com", "--port", "993", "--security", "tls", "--username", "s",
        "--password-stdin", env=environ, stdin="pw\n",
    )  # fmt: skip
    token = cli("api-token", "--tenant", "acme", env=environ)

    for result in (added, token):
        assert result.returncode == 2
        assert "tenant id 'acme' is not a UUID" in result.stderr


def test_rows_with_other_tenant_ids_are_reported_and_not_monitored(
    settings: Settings,
    environ: dict[str, str],
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    redis_client: redis.Redis[bytes],
    stream: str,
    tenant: str,
) -> None:
    good = worker.add_provider(tenant, dovecot, mail_user.name, mail_user.password)
    legacy_id = str(uuid.uuid4())
    with transaction(worker.parts.engine) as connection:  # rows another writer left: a copy
        for table, id_column in (
            (email_providers, email_providers.c.id),
            (imap_email_provider_config, imap_email_provider_config.c.email_provider_id),
        ):
            row = dict(connection.execute(select(table).where(id_column == good.id)).one()._mapping)
            connection.execute(
                insert(table).values({**row, id_column.name: legacy_id, "tenant": "acme"})
            )
        secret = select(email_secrets).where(email_secrets.c.name == password_secret_name(good.id))
        row = dict(connection.execute(secret).one()._mapping)
        row.pop("id", None)
        connection.execute(
            insert(email_secrets).values(
                {**row, "name": password_secret_name(legacy_id), "tenant": "acme"}
            )
        )

    checked = cli("check", env=environ)
    assert checked.returncode == 1
    assert f"provider {legacy_id}: tenant 'acme' is not a UUID" in checked.stdout
    assert good.id not in checked.stdout

    worker.start()
    dovecot.deliver(mail_user.name, make_message("one"))
    events = wait_for_stream_entries(redis_client, stream, 1)
    assert [e["payload"]["providerId"] for e in events] == [good.id]
    assert worker.supervisor is not None
    wait_for(lambda: worker.cursor(good) == 1, timeout_s=5, what="the good provider's cursor")
    held = worker.supervisor.held
    assert (tenant, good.id) in held and ("acme", legacy_id) not in held
    assert [e["payload"]["providerId"] for e in stream_events(redis_client, stream)] == [good.id]
