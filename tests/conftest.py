"""Fixtures for tests that need real servers: PostgreSQL, Redis, Dovecot and Cyrus IMAP.

They never skip: when a server cannot be had, the test fails with the reason. Unit tests do
not use these fixtures, so ``pytest tests/unit`` needs no server at all.
PostgreSQL: TEST_DATABASE_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
a fresh database is created per run and dropped afterwards. Redis: TEST_REDIS_URL
(default redis://127.0.0.1:6379/0); every test uses its own stream names. Dovecot and Cyrus
are installed (Cyrus: unpacked) from Debian's packages when missing; ``imap_server`` and
``imap_user`` run a test once on each of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from email_service.devserver.cyrus import CyrusServer, start_cyrus
from email_service.devserver.dovecot import DovecotServer, start_dovecot
from email_service.devserver.mailserver import MailServer
from email_service.security.secretbox import generate_key
from email_service.settings import Settings
from email_service.store.migrate import upgrade_database
from tests.helpers import unique
from tests.integration.service import InProcessWorker

ADMIN_URL = os.environ.get(
    "TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_configure(config: pytest.Config) -> None:
    """A temporary directory of this run alone, unless ``--basetemp`` names one.

    pytest's default (``/tmp/pytest-of-<user>``) is shared by every run of the user, and each
    run makes it mode 0700 again when it starts: a second run on the same machine would lock
    the first run's Dovecot (whose mail and auth users need to traverse it) out of its files.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="email-service-tests-")
        config.add_cleanup(lambda: shutil.rmtree(config.option.basetemp, ignore_errors=True))


def _admin_execute(statement: str) -> None:
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(statement)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is needed at {ADMIN_URL} (set TEST_DATABASE_ADMIN_URL): {exc}")


def _url_of(name: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    """A migrated database that each test's database is copied from."""
    name = f"email_service_template_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    upgrade_database(_url_of(name))
    yield name
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(template_database: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test alone."""
    name = f"email_service_test_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield _url_of(name)
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL} (set TEST_REDIS_URL): {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    server = start_dovecot(tmp_path_factory.mktemp("dovecot"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cyrus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CyrusServer]:
    server = start_cyrus(tmp_path_factory.mktemp("cyrus"))
    yield server
    server.stop()


@pytest.fixture(params=["dovecot", "cyrus"])
def imap_server(request: pytest.FixtureRequest) -> MailServer:
    """Each real IMAP server in turn: the test runs once against Dovecot, once against Cyrus."""
    server: MailServer = request.getfixturevalue(request.param)
    return server


@dataclass(frozen=True)
class MailUser:
    name: str
    password: str


@pytest.fixture
def mail_user(dovecot: DovecotServer) -> MailUser:
    """A fresh Dovecot user with an empty INBOX."""
    user = MailUser(unique("user"), unique("pw"))
    dovecot.add_user(user.name, user.password)
    return user


@pytest.fixture
def imap_user(imap_server: MailServer) -> MailUser:
    """A fresh user with an empty INBOX on ``imap_server``."""
    user = MailUser(unique("user"), unique("pw"))
    imap_server.add_user(user.name, user.password)
    return user


@pytest.fixture
def tenant() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def stream() -> str:
    return unique("test:events")


@pytest.fixture
def environ(database_url: str, redis_url: str, stream: str) -> dict[str, str]:
    """Environment for a service process (or ``Settings``) in this test."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "EMAIL_SERVICE_SECRET_KEYS": generate_key(),
        "EMAIL_SERVICE_EVENT_STREAM": stream,
        "IMAP_STARTUP_STAGGER_MS": "0",
        "IMAP_PROVIDER_REFRESH_MS": "300",
        "IMAP_RECONNECT_BASE_MS": "100",
        "IMAP_RECONNECT_MAX_MS": "1000",
        # The test servers (Dovecot, fakes, the authorization server) are on loopback.
        "IMAP_ALLOW_PRIVATE_HOSTS": "true",
    }


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env(environ, default_worker_id=unique("worker"))


@pytest.fixture
def worker(settings: Settings) -> Iterator[InProcessWorker]:
    """An in-process worker (supervisor and listener threads) on this test's servers."""
    service = InProcessWorker(settings)
    yield service
    service.close()


@pytest.fixture
def ca_file(dovecot: DovecotServer) -> Path:
    return dovecot.ca_file
