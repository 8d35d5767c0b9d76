"""``email-service provider add`` writes the provider and its password together, or nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.processes import cli
from tests.helpers import fail_writes_to

pytestmark = pytest.mark.e2e


def test_add_leaves_no_provider_without_its_password(
    environ: dict[str, str], database_url: str, tenant: str
) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            fail_writes_to(connection, "email_secrets", "INSERT")
        result = cli(
            "provider", "add", "--tenant", tenant, "--name", "Support",
            "--mailbox", "support@example.com", "--host", "imap.example.com", "--port", "993",
            "--security", "tls", "--username", "support", "--password-stdin",
            env=environ, stdin="secret\n",
        )  # fmt: skip
        assert result.returncode != 0, result.stdout
        with engine.connect() as connection:
            left = connection.execute(
                text("SELECT count(*) FROM email_providers WHERE tenant = :t"), {"t": tenant}
            ).scalar()
        assert left == 0
    finally:
        engine.dispose()
