"""The STATUS poller against real Dovecot, PostgreSQL and Redis."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from email_service.imap.session import Login
from email_service.model import FolderKey, ProviderConfig
from email_service.settings import Settings
from email_service.sync.context import ListenerContext
from email_service.sync.poller import FolderPoller
from tests.conftest import MailUser
from tests.helpers import make_message, stream_events, subjects, unique, wait_for
from tests.helpers import wait_for_stream_entries as wait_for_entries
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.integration

#: Fast enough that a test sees several rounds over three folders within a second or two.
POLL_INTERVAL_MS = "600"


class CountingLogins:
    """The worker's ``load_login``, counting calls: one per IMAP connection opened."""

    def __init__(self, context: ListenerContext) -> None:
        self._load = context.load_login
        self.calls = 0

    def __call__(self, provider: ProviderConfig, *, rejected: str | None = None) -> Login:
        self.calls += 1
        return self._load(provider, rejected=rejected)


@pytest.fixture
def worker(environ: dict[str, str]) -> Iterator[InProcessWorker]:
    settings = Settings.from_env(
        {**environ, "IMAP_POLL_INTERVAL_MS": POLL_INTERVAL_MS},
        default_worker_id=unique("worker"),
    )
    service = InProcessWorker(settings)
    yield service
    service.close()


@pytest.fixture
def logins(worker: InProcessWorker) -> CountingLogins:
    return CountingLogins(worker.parts.listener_context)


@pytest.fixture
def pollers() -> Iterator[list[FolderPoller]]:
    started: list[FolderPoller] = []
    yield started
    for poller in started:
        poller.stop()
    for poller in started:
        assert poller.join(10), "poller did not stop"


def start_poller(
    worker: InProcessWorker,
    provider: ProviderConfig,
    logins: CountingLogins,
    pollers: list[FolderPoller],
) -> FolderPoller:
    context = dataclasses.replace(worker.parts.listener_context, load_login=logins)
    poller = FolderPoller(provider, provider.folders, provider.lease_fence, context)
    pollers.append(poller)
    poller.start()
    return poller


def wait_for_polling(poller: FolderPoller, folders: int) -> None:
    wait_for(
        lambda: len(poller.known_cursors()) == folders and poller.state == "polling",
        timeout_s=10,
        what=f"{folders} folders caught up and polled",
    )


def stored_cursor(worker: InProcessWorker, provider: ProviderConfig, folder: str) -> int | None:
    return worker.cursor(provider, folder)


def test_three_folders_on_one_connection_each_message_once(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
    logins: CountingLogins,
    pollers: list[FolderPoller],
) -> None:
    names = ["Sales", "Billing", "Support"]
    for name in names:
        dovecot.create_folder(mail_user.name, name)
    provider = worker.add_provider(
        tenant, dovecot, mail_user.name, mail_user.password, folders=names
    )
    poller = start_poller(worker, provider, logins, pollers)
    wait_for_polling(poller, 3)

    for name in names:
        dovecot.deliver(mail_user.name, make_message(f"to {name}"), folder=name)
    events = wait_for_entries(redis_client, stream, 3)
    wait_for(
        lambda: all(stored_cursor(worker, provider, name) == 1 for name in names),
        timeout_s=5,
        what="every folder's cursor at uid 1",
    )
    events = stream_events(redis_client, stream)
    assert sorted(subjects(events)) == sorted(f"to {name}" for name in names)
    by_folder = {e["payload"]["emailData"]["imap"]["folder"]: e for e in events}
    assert sorted(by_folder) == sorted(names)
    assert by_folder["Sales"]["payload"]["emailData"]["subject"] == "to Sales"

    dovecot.deliver(mail_user.name, make_message("again to Billing"), folder="Billing")
    wait_for(
        lambda: stored_cursor(worker, provider, "Billing") == 2, timeout_s=5, what="Billing at 2"
    )
    events = stream_events(redis_client, stream)
    assert len(events) == 4
    assert subjects(events)[-1] == "again to Billing"
    assert len({e["event_id"] for e in events}) == 4
    wait_for(  # the poller's own copy moves right after the database's
        lambda: (
            {f: c.last_uid for f, c in poller.known_cursors().items()}
            == {"Sales": 1, "Billing": 2, "Support": 1}
        ),
        timeout_s=5,
        what="the poller's cursors",
    )
    assert logins.calls == 1, "the poller opened more than one IMAP connection"
    assert poller.state in ("polling", "syncing")

    began = time.monotonic()
    poller.stop()
    assert poller.join(2), "poller did not stop within 2 s"
    assert time.monotonic() - began < 2
    assert poller.state == "stopped"


def test_uidvalidity_change_seen_by_status_rebaselines(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
    logins: CountingLogins,
    pollers: list[FolderPoller],
) -> None:
    for name in ("Support", "Sales"):
        dovecot.create_folder(mail_user.name, name)
    provider = worker.add_provider(
        tenant, dovecot, mail_user.name, mail_user.password, folders=["Support", "Sales"]
    )
    poller = start_poller(worker, provider, logins, pollers)
    wait_for_polling(poller, 2)
    for n in range(2):
        dovecot.deliver(mail_user.name, make_message(f"first life {n}"), folder="Support")
    wait_for_entries(redis_client, stream, 2)
    # Mail to Sales makes it the selected folder, so Support is watched by STATUS alone.
    dovecot.deliver(mail_user.name, make_message("to Sales"), folder="Sales")
    wait_for_entries(redis_client, stream, 3)
    old_validity = poller.known_cursors()["Support"].uid_validity

    # A new Support appears with 9 messages at once: more than the 5-message start window.
    dovecot.create_folder(mail_user.name, "Support-next")
    for n in range(9):
        dovecot.deliver(mail_user.name, make_message(f"second life {n}"), folder="Support-next")
    dovecot.delete_folder(mail_user.name, "Support")
    dovecot.doveadm("mailbox", "rename", "-s", "-u", mail_user.name, "Support-next", "Support")

    wait_for_entries(redis_client, stream, 8)
    key = FolderKey(tenant, provider.id, "Support")
    cursor = wait_for(
        lambda: (
            (c := worker.parts.listener_context.cursors.load_cursor(key))
            and c.uid_validity != old_validity
            and c.last_uid == 9
            and c
        ),
        timeout_s=10,
        what="Support's cursor at uid 9 of the new UIDVALIDITY",
    )
    events = stream_events(redis_client, stream)
    assert subjects(events)[3:] == [f"second life {n}" for n in range(4, 9)]
    support = [e for e in events if e["payload"]["emailData"]["imap"]["folder"] == "Support"]
    assert {e["payload"]["emailData"]["imap"]["uidValidity"] for e in support} == {
        old_validity,
        cursor.uid_validity,
    }
    assert logins.calls == 1, "the change should be found by STATUS, not by reconnecting"


def test_a_missing_folder_is_recorded_and_the_others_are_still_polled(
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
    logins: CountingLogins,
    pollers: list[FolderPoller],
) -> None:
    dovecot.create_folder(mail_user.name, "Sales")
    provider = worker.add_provider(
        tenant, dovecot, mail_user.name, mail_user.password, folders=["Nowhere", "Sales"]
    )
    start_poller(worker, provider, logins, pollers)
    wait_for(
        lambda: stored_cursor(worker, provider, "Sales") == 0, timeout_s=10, what="Sales opened"
    )
    dovecot.deliver(mail_user.name, make_message("still arrives"), folder="Sales")
    events = wait_for_entries(redis_client, stream, 1)
    assert subjects(events) == ["still arrives"]
    with worker.parts.engine.connect() as connection:
        last_error = connection.exec_driver_sql(
            "SELECT last_error FROM imap_email_provider_config WHERE email_provider_id = %(id)s",
            {"id": provider.id},
        ).scalar_one()
    assert "'Nowhere' does not exist" in last_error
    assert logins.calls == 1
