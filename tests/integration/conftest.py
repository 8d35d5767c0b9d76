"""Fixtures for integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from email_service.api.imap_calls import Resolver, resolve_addresses
from email_service.settings import Settings
from email_service.store.engine import make_engine
from email_service.store.migrate import upgrade_database
from tests.integration.api_harness import ApiHarness, api_environ
from tests.integration.oauth_fixtures import (  # noqa: F401 - fixtures of the OAuth tests
    mailbox,
    make_worker,
    oauth_api,
    oauth_dovecot,
    oauth_environ,
    oauth_provider,
    oauth_server,
    oauth_server_instance,
)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database: each test using it runs on PostgreSQL and on SQLite."""
    if request.param == "postgresql":
        url = request.getfixturevalue("database_url")
    else:
        url = f"sqlite:///{tmp_path / 'email-service.db'}"
        upgrade_database(url)
        upgrade_database(url)  # idempotent
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_api(environ: dict[str, str]) -> Iterator[Callable[..., ApiHarness]]:
    """Serves an API with the test settings plus ``extra`` ones; closed after the test.

    ``make_api(resolver=..., NAME="value")``: a module whose API needs other settings
    defines its ``api`` fixture with this instead of building and closing a harness itself.
    """
    harnesses: list[ApiHarness] = []

    def make(resolver: Resolver = resolve_addresses, **extra: str) -> ApiHarness:
        harness = ApiHarness(Settings.from_env(api_environ(environ, **extra)), resolver)
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.close()


@pytest.fixture
def api(make_api: Callable[..., ApiHarness]) -> ApiHarness:
    """The API with the test settings (a test module may define its own ``api``)."""
    return make_api()
