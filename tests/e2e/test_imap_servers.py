"""The scenarios that matter, on each real IMAP server (Dovecot, then Cyrus), with a real
``email-service worker`` process: mail delivered while running (two folders), a backlog
with ``\\Seen`` mail after a restart, a server restart, and a folder deleted and recreated
while the worker is in IDLE on it. The test bodies do not know which server they run on.
"""

from __future__ import annotations

import ssl
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imapclient
import pytest
import redis
from sqlalchemy import Engine, text

from email_service.devserver.cyrus import CyrusServer, start_cyrus
from email_service.devserver.dovecot import start_dovecot
from email_service.devserver.mailserver import MailServer
from email_service.model import ImapEndpoint, NewProvider, Security
from email_service.store.engine import make_engine
from tests.conftest import MailUser
from tests.e2e.processes import WorkerProcess
from tests.helpers import add_provider, make_message, stream_events, subjects, unique, wait_for

pytestmark = pytest.mark.e2e

#: Bound for what takes well under a second normally (an event, a reconnect, a restart).
PROMPT_S = 15.0


@dataclass
class Scene:
    """A test's servers and worker processes, whichever IMAP server it runs on."""

    server: MailServer
    user: MailUser
    tenant: str
    environ: dict[str, str]
    engine: Engine
    redis: redis.Redis[bytes]
    stream: str
    log: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def add_provider(self, folders: Sequence[str] = ("INBOX",)) -> str:
        return add_provider(
            self.engine,
            self.environ["EMAIL_SERVICE_SECRET_KEYS"],
            NewProvider(
                tenant=self.tenant,
                name="Support",
                mailbox=f"{self.user.name}@localhost",
                username=self.user.name,
                folders=tuple(folders),
                endpoint=ImapEndpoint(
                    "localhost",
                    self.server.imaps_port,
                    Security.TLS,
                    tls_ca_file=str(self.server.ca_file),
                ),
            ),
            password=self.user.password,
        )

    def start_worker(self, idle: int = 1) -> WorkerProcess:
        """A worker process, once ``idle`` of its connections are in IDLE."""
        worker = WorkerProcess(self.environ, self.log)
        self.workers.append(worker)
        wait_for_idle(worker, idle)
        return worker

    def deliver(self, subject: str, folder: str = "INBOX") -> None:
        self.server.deliver(self.user.name, make_message(subject), folder=folder)

    def wait_for_subjects(self, count: int) -> list[str]:
        return wait_for(
            lambda: len(found := subjects(self.events())) >= count and found,
            timeout_s=PROMPT_S,
            what=f"{count} events",
        )

    def events(self) -> list[dict[str, Any]]:
        return stream_events(self.redis, self.stream)

    def provider_status(self, provider_id: str) -> str:
        with self.engine.connect() as connection:
            return str(
                connection.execute(
                    text("SELECT status FROM email_providers WHERE id = :id"), {"id": provider_id}
                ).scalar_one()
            )


@dataclass(frozen=True)
class Surroundings:
    """What a scene needs besides its IMAP server and user."""

    tenant: str
    environ: dict[str, str]
    redis: redis.Redis[bytes]
    stream: str
    log: Path


@pytest.fixture
def surroundings(
    tenant: str,
    environ: dict[str, str],
    stream: str,
    redis_client: redis.Redis[bytes],
    tmp_path: Path,
) -> Surroundings:
    return Surroundings(tenant, environ, redis_client, stream, tmp_path / "worker.log")


def make_scene(server: MailServer, user: MailUser, around: Surroundings) -> Iterator[Scene]:
    engine = make_engine(around.environ["DATABASE_URL"])
    scene = Scene(
        server,
        user,
        around.tenant,
        around.environ,
        engine,
        around.redis,
        around.stream,
        around.log,
    )
    try:
        yield scene
    finally:
        for worker in scene.workers:
            if worker.process.poll() is None:
                worker.kill()
        engine.dispose()


@pytest.fixture
def scene(
    imap_server: MailServer, imap_user: MailUser, surroundings: Surroundings
) -> Iterator[Scene]:
    """The test on the shared Dovecot, then on the shared Cyrus (``imap_server``)."""
    yield from make_scene(imap_server, imap_user, surroundings)


def listeners_in_idle(worker: WorkerProcess) -> int:
    """The worker's own gauge of connections in IDLE (0 while it cannot answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=2) as r:
            metrics = r.read().decode()
    except OSError:
        return 0
    for line in metrics.splitlines():
        if line.startswith('email_service_listeners{state="idle"}'):
            return int(float(line.split()[-1]))
    return 0


def wait_for_idle(worker: WorkerProcess, count: int = 1) -> None:
    wait_for(lambda: listeners_in_idle(worker) >= count, timeout_s=30, what=f"{count} in IDLE")


def imap_data(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event["payload"]["emailData"]["imap"] for event in events]


def assert_exactly_once(events: list[dict[str, Any]]) -> None:
    assert len({event["event_id"] for event in events}) == len(events)
    ids = [event["payload"]["emailData"]["id"] for event in events]
    assert len(set(ids)) == len(ids), "a message was published twice"


@contextmanager
def user_client(server: MailServer, user: MailUser) -> Iterator[imapclient.IMAPClient]:
    """An IMAP session of the test user over TLS: "another client" of the mailbox."""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    client = imapclient.IMAPClient(
        "localhost", port=server.imaps_port, ssl_context=context, timeout=10
    )
    client.login(user.name, user.password)
    try:
        yield client
    finally:
        client.logout()


def test_mail_delivered_while_running_to_two_folders(scene: Scene) -> None:
    scene.server.create_folder(scene.user.name, "Support")
    scene.add_provider(folders=("INBOX", "Support"))
    scene.start_worker(idle=2)
    scene.deliver("inbox 1")
    scene.deliver("support 1", folder="Support")
    scene.deliver("inbox 2")
    assert sorted(scene.wait_for_subjects(3)) == ["inbox 1", "inbox 2", "support 1"]
    events = scene.events()
    assert sorted(d["folder"] for d in imap_data(events)) == ["INBOX", "INBOX", "Support"]
    assert_exactly_once(events)


def test_a_backlog_with_seen_mail_arrives_once_after_a_worker_restart(scene: Scene) -> None:
    """More than IMAP_MAX_EMAILS_PER_SYNC messages while stopped, two of them read by another
    client: all of them, once, in order (new mail is found by UID, not by flags)."""
    scene.add_provider()
    first = scene.start_worker()
    scene.deliver("before the stop")
    scene.wait_for_subjects(1)
    assert first.terminate() == 0
    backlog = [f"backlog {n}" for n in range(12)]
    for subject in backlog:
        scene.deliver(subject)
    with user_client(scene.server, scene.user) as client:
        client.select_folder("INBOX")
        client.add_flags([2, 3], [imapclient.SEEN])  # another client read two of them
    scene.start_worker()
    assert scene.wait_for_subjects(13) == ["before the stop", *backlog]
    events = scene.events()
    seen = [("\\Seen" in d["flags"]) for d in imap_data(events)[:4]]
    assert seen == [False, True, True, False]
    assert_exactly_once(events)


@pytest.fixture(params=["dovecot", "cyrus"])
def own_scene(
    request: pytest.FixtureRequest, surroundings: Surroundings, tmp_path: Path
) -> Iterator[Scene]:
    """A scene on a server of this test alone (so it can be restarted)."""
    start = start_cyrus if request.param == "cyrus" else start_dovecot
    server = start(tmp_path / request.param)
    user = MailUser(unique("user"), unique("pw"))
    server.add_user(user.name, user.password)
    scenes = make_scene(server, user, surroundings)
    scene = next(scenes)
    try:
        yield scene
    finally:
        scenes.close()  # the workers first
        scene.server.stop()  # the server as it is now (restarted, perhaps)


def restart(scene: Scene) -> None:
    """Stop the scene's server and start it again: same work directory and ports, so the
    users, the mail and the certificate are kept."""
    old = scene.server
    old.stop()
    start = start_cyrus if isinstance(old, CyrusServer) else start_dovecot
    scene.server = start(old.workdir, ports=(old.imap_port, old.imaps_port, old.lmtp_port))


def test_a_server_restart_is_survived_without_loss_or_doubles(own_scene: Scene) -> None:
    scene = own_scene
    provider_id = scene.add_provider()
    worker = scene.start_worker()
    scene.deliver("before the restart")
    scene.wait_for_subjects(1)
    restart(scene)
    scene.deliver("right after the restart")
    wait_for_idle(worker)
    scene.deliver("once reconnected")
    found = scene.wait_for_subjects(3)
    assert found == ["before the restart", "right after the restart", "once reconnected"]
    assert_exactly_once(scene.events())
    wait_for(
        lambda: scene.provider_status(provider_id) == "connected",
        timeout_s=PROMPT_S,
        what="connected again",
    )


def test_a_folder_recreated_while_in_idle_is_rebaselined_at_once(scene: Scene) -> None:
    """Deleted and created again under the listener (Dovecot says ``* NO`` in IDLE, Cyrus
    sends only EXPUNGEs): the new folder's mail is published under its new UIDVALIDITY,
    nothing old again, well before the IDLE re-issue (2 minutes) could have found it."""
    scene.server.create_folder(scene.user.name, "Support")
    for n in range(3):
        scene.deliver(f"first life {n}", folder="Support")
    scene.add_provider(folders=("Support",))
    worker = scene.start_worker()
    scene.wait_for_subjects(3)

    scene.server.delete_folder(scene.user.name, "Support")
    scene.server.create_folder(scene.user.name, "Support")
    recreated_at = time.monotonic()
    scene.deliver("second life 0", folder="Support")
    scene.wait_for_subjects(4)
    noticed_s = time.monotonic() - recreated_at
    wait_for_idle(worker)
    scene.deliver("second life 1", folder="Support")
    found = scene.wait_for_subjects(5)

    assert found == [*(f"first life {n}" for n in range(3)), "second life 0", "second life 1"]
    events = scene.events()
    old, new = imap_data(events)[:3], imap_data(events)[3:]
    assert len({d["uidValidity"] for d in old}) == 1
    assert {d["uidValidity"] for d in new} == {new[0]["uidValidity"]} != {old[0]["uidValidity"]}
    assert [d["uid"] for d in new] == [1, 2]
    assert_exactly_once(events)
    kind = type(scene.server).__name__
    print(f"{kind}: recreated folder's first message published {noticed_s:.2f}s after")
    assert noticed_s < PROMPT_S
