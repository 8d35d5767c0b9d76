"""A real ``email-service worker`` against network faults: frozen, flapping and refused IMAP.

Faults come from ``tests/tcp_proxy.py`` between the worker and Dovecot, and from the fake
server of ``email_service/devserver/fake_imap.py`` that accepts every login and then hangs
up (Dovecot will not do that on demand).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from email_service.devserver.fake_imap import FakeImapServer
from tests.conftest import MailUser
from tests.e2e.processes import WorkerProcess, add_provider_with_cli
from tests.helpers import make_message, stream_events, subjects, wait_for
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

T = TypeVar("T")

#: IDLE re-issue and per-command read timeout of the half-open test: small, so a frozen
#: connection is given up within seconds instead of the production minutes.
FAST_LIVENESS_MS = 2000
#: Bound on freeze → event across a frozen connection: the rest of the IDLE period (≤ 2 s)
#: + DONE unanswered (2 s) + LOGOUT (≤ 2 s; in practice at once, a socket file that timed
#: out refuses further reads) + first backoff (0.1 s) + reconnect and catch-up (< 1 s)
#: ≈ 4 to 7 s; twice that, to absorb a loaded machine.
HALF_OPEN_BOUND_S = 15.0
#: Reconnect policy of the backoff test: doubling from 100 ms up to a 1.6 s cap, ±10 %.
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 1.6
BACKOFF_JITTER = 0.1
#: How long the backoff test watches the worker log in and get dropped.
BACKOFF_WINDOW_S = 10.0
#: Most logins allowed in that window: the policy gives about 11, a storm thousands.
BACKOFF_MAX_LOGINS = 15
#: Time a dropped login costs beyond its backoff (status write, secret load, connect,
#: greeting, CAPABILITY, LOGIN); generous, since only the lower bounds catch a storm.
ATTEMPT_SLACK_S = 0.35
#: Reconnect attempts refused while the IMAP server is "restarting" (about 2.5 s with the
#: fixture's 100 ms → 1 s backoff).
REFUSED_ATTEMPTS = 5
#: Bound for things that take well under a second normally (a reconnect, an event).
PROMPT_S = 10.0


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.kill()


def start_worker(
    env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> WorkerProcess:
    worker = WorkerProcess(env, tmp_path / "worker.log")
    workers.append(worker)
    wait_with_log(tmp_path, lambda: worker.get("/ready")[0] == 200, 20, "worker ready")
    return worker


def wait_with_log(tmp_path: Path, condition: Callable[[], T], timeout_s: float, what: str) -> T:
    """``wait_for``, with the end of the worker's log in the failure message."""
    try:
        return wait_for(condition, timeout_s=timeout_s, what=what)
    except AssertionError as exc:
        log = tmp_path / "worker.log"
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
        raise AssertionError(f"{exc}\n--- worker log (end) ---\n{tail}") from None


def provider_status(database_url: str, provider_id: str) -> tuple[str, str | None]:
    """``email_providers.status`` and ``imap_email_provider_config.last_error``."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        row = connection.execute(
            "SELECT p.status, c.last_error FROM email_providers p"
            " JOIN imap_email_provider_config c"
            " ON c.email_provider_id = p.id AND c.tenant = p.tenant"
            " WHERE p.id = %s",
            (provider_id,),
        ).fetchone()
    assert row is not None, f"provider {provider_id} is not in the database"
    return row[0], row[1]


def wait_for_subjects(
    client: redis.Redis[bytes], stream: str, count: int, tmp_path: Path, timeout_s: float
) -> list[str]:
    return wait_with_log(
        tmp_path,
        lambda: len(found := subjects(stream_events(client, stream))) >= count and found,
        timeout_s,
        f"{count} events on {stream}",
    )


def test_a_frozen_connection_is_replaced_and_the_mail_still_arrives(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    redis_client: redis.Redis[bytes],
    stream: str,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    """A half-open connection is given up and mail delivered meanwhile is published < 15 s.

    The proxy freezes the worker's connection (no byte, FIN or RST either way, and the
    proxy's kernel still answers keepalive probes), so only the IDLE re-issue timer
    (``IMAP_IDLE_REISSUE_MS`` = 2 s) and the command timeout (``IMAP_CONNECTION_TIMEOUT_MS``
    = 2 s, for the unanswered DONE) can notice. Bound, from the freeze to the event: the
    rest of the IDLE period (≤ 2 s) + DONE timeout (2 s) + LOGOUT (≤ 2 s, in practice
    immediate) + first backoff (0.1 s) + reconnect and catch-up (< 1 s), about 4 to 7 s;
    asserted < 15 s (measured: about 4.3 s).
    """
    env = {
        **environ,
        "IMAP_IDLE_REISSUE_MS": str(FAST_LIVENESS_MS),
        "IMAP_CONNECTION_TIMEOUT_MS": str(FAST_LIVENESS_MS),
    }
    with TcpProxy.start("127.0.0.1", dovecot.imaps_port) as proxy:
        provider_id = add_provider_with_cli(
            env,
            port=proxy.port,
            security="tls",
            username=mail_user.name,
            password=mail_user.password,
            ca_file=dovecot.ca_file,
        )
        start_worker(env, tmp_path, workers)
        wait_with_log(
            tmp_path,
            lambda: provider_status(env["DATABASE_URL"], provider_id)[0] == "connected",
            PROMPT_S,
            "provider connected",
        )
        dovecot.deliver(mail_user.name, make_message("before the freeze"))
        wait_for_subjects(redis_client, stream, 1, tmp_path, PROMPT_S)
        connections_before = proxy.connections_total

        proxy.freeze_existing()
        frozen_at = time.monotonic()
        dovecot.deliver(mail_user.name, make_message("during the freeze"))
        found = wait_for_subjects(redis_client, stream, 2, tmp_path, HALF_OPEN_BOUND_S)
        detected_s = time.monotonic() - frozen_at

        assert found == ["before the freeze", "during the freeze"]
        assert detected_s < HALF_OPEN_BOUND_S
        assert proxy.connections_total > connections_before, "no new connection was made"
        print(f"frozen connection replaced, mail published after {detected_s:.2f}s")


@pytest.mark.parametrize("drop_after", ["LOGIN", "EXAMINE"], ids=["login", "examine"])
def test_a_server_that_drops_every_session_is_retried_with_capped_exponential_backoff(
    drop_after: str, environ: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """Sessions accepted then dropped at once back off 0.1, 0.2, 0.4, 0.8, 1.6, 1.6 s…

    The connection never stays up for ``IMAP_RECONNECT_STABLE_MS``, so the failure count
    never resets: about 11 logins in 10 s, where a retry at once would make thousands.
    Dropped after LOGIN, the session never opens; after EXAMINE, it has opened (and the
    stable-period clock started) before it fails.
    """
    env = {
        **environ,
        "IMAP_RECONNECT_BASE_MS": str(int(BACKOFF_BASE_S * 1000)),
        "IMAP_RECONNECT_MAX_MS": str(int(BACKOFF_CAP_S * 1000)),
        "IMAP_RECONNECT_JITTER_PCT": str(BACKOFF_JITTER),
        "IMAP_RECONNECT_STABLE_MS": "60000",  # far above any dropped session's life
    }
    with FakeImapServer.start(drop_after=drop_after) as server:
        provider_id = add_provider_with_cli(
            env, port=server.port, security="none", username="someone", password="secret"
        )
        start_worker(env, tmp_path, workers)
        # watch until a login lands past the window, so the whole window has been seen
        logins = wait_with_log(
            tmp_path,
            lambda: len(t := server.login_times()) > 1 and t[-1] - t[0] > BACKOFF_WINDOW_S and t,
            BACKOFF_WINDOW_S + 15,
            f"{BACKOFF_WINDOW_S:g}s of login attempts",
        )
        status, last_error = wait_with_log(
            tmp_path,
            lambda: (
                (found := provider_status(env["DATABASE_URL"], provider_id))[0] == "error" and found
            ),
            PROMPT_S,
            "the provider in error",
        )

    in_window = [t for t in logins if t - logins[0] <= BACKOFF_WINDOW_S]
    gaps = [later - earlier for earlier, later in itertools.pairwise(logins)]
    shown = ", ".join(f"{gap:.2f}" for gap in gaps)
    print(f"{len(in_window)} logins in {BACKOFF_WINDOW_S:g}s; gaps (s): {shown}")

    assert 5 <= len(in_window) <= BACKOFF_MAX_LOGINS, shown
    for attempt, gap in enumerate(gaps):
        expected = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
        low = expected * (1 - BACKOFF_JITTER) * 0.95
        high = expected * (1 + BACKOFF_JITTER) + ATTEMPT_SLACK_S
        assert low <= gap <= high, f"gap {attempt + 1} of {shown}: expected ~{expected}s"
    uncapped = [
        gap for attempt, gap in enumerate(gaps) if BACKOFF_BASE_S * 2**attempt < BACKOFF_CAP_S
    ]
    assert uncapped == sorted(uncapped), f"gaps before the cap do not grow: {shown}"
    for gap in gaps[-3:]:
        assert 0.8 * BACKOFF_CAP_S <= gap <= 1.3 * BACKOFF_CAP_S, shown
    assert status == "error"
    assert last_error and "connection" in last_error.lower(), last_error


def test_an_imap_server_restart_publishes_the_mail_once_and_reconnects(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    redis_client: redis.Redis[bytes],
    stream: str,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    """Connections refused for a few seconds: mail delivered then is published once, after."""
    with TcpProxy.start("127.0.0.1", dovecot.imaps_port) as proxy:
        provider_id = add_provider_with_cli(
            environ,
            port=proxy.port,
            security="tls",
            username=mail_user.name,
            password=mail_user.password,
            ca_file=dovecot.ca_file,
        )

        def status() -> str:
            return provider_status(environ["DATABASE_URL"], provider_id)[0]

        start_worker(environ, tmp_path, workers)
        wait_with_log(tmp_path, lambda: status() == "connected", PROMPT_S, "provider connected")
        dovecot.deliver(mail_user.name, make_message("before the restart"))
        wait_for_subjects(redis_client, stream, 1, tmp_path, PROMPT_S)

        proxy.refuse()  # the server goes away: the connection is reset, reconnects refused
        dovecot.deliver(mail_user.name, make_message("during the restart"))
        wait_with_log(
            tmp_path,
            lambda: proxy.connections_refused >= REFUSED_ATTEMPTS and status() == "error",
            PROMPT_S,
            f"{REFUSED_ATTEMPTS} refused reconnects and the provider in error",
        )
        assert subjects(stream_events(redis_client, stream)) == ["before the restart"]

        proxy.forward()  # the server is back
        wait_with_log(tmp_path, lambda: status() == "connected", PROMPT_S, "connected again")
        dovecot.deliver(mail_user.name, make_message("after the restart"))
        wait_for_subjects(redis_client, stream, 3, tmp_path, PROMPT_S)

    events = stream_events(redis_client, stream)
    assert subjects(events) == ["before the restart", "during the restart", "after the restart"]
    assert len({event["event_id"] for event in events}) == len(events)
