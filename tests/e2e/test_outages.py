"""Redis and PostgreSQL go away while mail arrives (every connection cut and new ones
refused, through a proxy): nothing is lost, nothing is published twice, and the worker
recovers by itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from sqlalchemy import text

from email_service.devserver.dovecot import DovecotServer
from email_service.model import ImapEndpoint, NewProvider, Security
from email_service.store.engine import make_engine
from tests.conftest import MailUser
from tests.e2e.processes import WorkerProcess
from tests.helpers import TENANT_A, add_provider, make_message, stream_events, wait_for
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

LEASE_TTL_MS = 3000


def through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture
def proxies(environ: dict[str, str]) -> Iterator[tuple[TcpProxy, TcpProxy]]:
    pg, rd = urlsplit(environ["DATABASE_URL"]), urlsplit(environ["REDIS_URL"])
    with (
        TcpProxy.start(pg.hostname or "127.0.0.1", pg.port or 5432) as pg_proxy,
        TcpProxy.start(rd.hostname or "127.0.0.1", rd.port or 6379) as redis_proxy,
    ):
        yield pg_proxy, redis_proxy


def test_redis_and_database_outages_lose_nothing_and_heal(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    redis_client: redis.Redis[bytes],
    stream: str,
    proxies: tuple[TcpProxy, TcpProxy],
    tmp_path: Path,
) -> None:
    pg_proxy, redis_proxy = proxies
    engine = make_engine(environ["DATABASE_URL"])
    add_provider(
        engine,
        environ["EMAIL_SERVICE_SECRET_KEYS"],
        NewProvider(
            tenant=TENANT_A,
            name="Support",
            mailbox=f"{mail_user.name}@localhost",
            username=mail_user.name,
            endpoint=ImapEndpoint(
                "localhost", dovecot.imaps_port, Security.TLS, tls_ca_file=str(dovecot.ca_file)
            ),
        ),
        password=mail_user.password,
    )

    def status() -> tuple[str, str | None, object]:
        with engine.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT p.status, c.last_error, p.last_sync_at FROM email_providers p "
                    "JOIN imap_email_provider_config c ON c.email_provider_id = p.id"
                )
            ).one()
        return row[0], row[1], row[2]

    env = {
        **environ,
        "DATABASE_URL": through(environ["DATABASE_URL"], pg_proxy),
        "REDIS_URL": through(environ["REDIS_URL"], redis_proxy),
        "IMAP_LEASE_TTL_MS": str(LEASE_TTL_MS),
        "IMAP_PROVIDER_REFRESH_MS": "500",
    }
    worker = WorkerProcess(env, tmp_path / "worker.log")
    sent: list[str] = []

    def deliver(label: str) -> None:
        message_id = f"<{label.replace(' ', '-')}-{len(sent)}@example.com>"
        dovecot.deliver(mail_user.name, make_message(label, message_id=message_id))
        sent.append(message_id)

    def all_published() -> bool:
        return len(stream_events(redis_client, stream)) >= len(sent)

    try:
        wait_for(lambda: status()[0] == "connected", timeout_s=20, what="connected")
        deliver("before")
        wait_for(all_published, timeout_s=10, what="first event")

        redis_proxy.refuse()  # Redis goes away: every connection cut, new ones refused
        deliver("during redis outage")
        wait_for(lambda: status()[0] == "error", timeout_s=30, what="error status (Redis)")
        assert "Redis" in (status()[1] or "")
        redis_proxy.forward()
        deliver("after redis outage")
        wait_for(all_published, timeout_s=30, what="events after the Redis outage")
        wait_for(lambda: status()[0] == "connected", timeout_s=30, what="connected again")

        pg_proxy.refuse()  # the database goes away for longer than the lease TTL
        deliver("during database outage")
        time.sleep(LEASE_TTL_MS / 1000 * 1.5)  # the outage itself; nothing to poll for
        pg_proxy.forward()
        deliver("after database outage")
        wait_for(all_published, timeout_s=60, what="events after the database outage")
        wait_for(lambda: status()[0] == "connected", timeout_s=30, what="connected again")
    finally:
        worker.kill()
        engine.dispose()
    events = stream_events(redis_client, stream)
    ids = [e["payload"]["emailData"]["id"] for e in events]
    assert sorted(ids) == sorted(sent), "a message is missing or doubled"
    assert len({e["event_id"] for e in events}) == len(events)
