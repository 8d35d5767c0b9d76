"""Gmail label folders: one event per message (X-GM-MSGID) across every monitored label.

Dovecot has no X-GM-EXT-1, so this runs the worker against the scriptable fake server of
``email_service/devserver/fake_imap.py`` serving a mailbox; everything else about the
worker is real (its threads, PostgreSQL, Redis and the publish script).
"""

from __future__ import annotations

import pytest
import redis

from email_service.devserver.fake_imap import FakeFolder, FakeImapServer, FakeMessage
from email_service.publish.redis_keys import gmail_message_key, provider_stats_key
from tests.helpers import make_message, stream_events, subjects, wait_for
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.integration

GMAIL = ("IMAP4rev1", "IDLE", "X-GM-EXT-1")
PLAIN_IMAP = ("IMAP4rev1", "IDLE")


def copies_of(client: redis.Redis[bytes], tenant: str, provider_id: str, msgid: int) -> set[str]:
    record = client.hgetall(gmail_message_key(tenant, provider_id, msgid))
    return {k.decode() for k in record if k.startswith(b"copy:")}


@pytest.mark.parametrize(
    ("capabilities", "events_per_message"),
    [(GMAIL, 1), (PLAIN_IMAP, 2)],
    ids=["gmail-one-event-per-message", "other-servers-one-event-per-copy"],
)
def test_a_message_in_several_label_folders(
    worker: InProcessWorker,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
    capabilities: tuple[str, ...],
    events_per_message: int,
) -> None:
    labelled = make_message("labelled twice", message_id="<twice@example.com>")
    single = make_message("only in Support", message_id="<single@example.com>")
    folders = {
        "INBOX": FakeFolder(11, [FakeMessage(1, labelled, gmail_msgid=1001)]),
        "Support": FakeFolder(
            22, [FakeMessage(4, labelled, gmail_msgid=1001), FakeMessage(5, single, 1002)]
        ),
    }
    with FakeImapServer.start(folders=folders, capabilities=capabilities) as server:
        provider = worker.add_fake_provider(tenant, server.port, ("INBOX", "Support"))
        worker.start()
        wait_for(
            lambda: (
                worker.cursor(provider, "INBOX") == 1 and worker.cursor(provider, "Support") == 5
            ),
            timeout_s=10,
            what="both folders caught up",
        )
        wait_for(
            lambda: sorted(worker.listener_states()) == ["idle", "idle"],
            timeout_s=10,
            what="both listeners in IDLE",
        )
        later = make_message("arrives later", message_id="<later@example.com>")
        server.add_message("INBOX", FakeMessage(2, later, gmail_msgid=1003))
        server.add_message("Support", FakeMessage(6, later, gmail_msgid=1003))
        wait_for(
            lambda: (
                worker.cursor(provider, "INBOX") == 2 and worker.cursor(provider, "Support") == 6
            ),
            timeout_s=10,
            what="the new copies handled in both folders",
        )

    events = stream_events(redis_client, stream)
    assert sorted(subjects(events)) == sorted(
        ["labelled twice"] * events_per_message
        + ["only in Support"]
        + ["arrives later"] * events_per_message
    )
    stats = redis_client.hgetall(provider_stats_key(tenant, provider.id))
    recorded = sum(int(v) for k, v in stats.items() if k.startswith(b"gmail_copies:"))
    metrics = worker.parts.listener_context.metrics
    if events_per_message == 1:
        for msgid, where in [
            (1001, ("INBOX/11/1", "Support/22/4")),
            (1003, ("INBOX/11/2", "Support/22/6")),
        ]:
            assert copies_of(redis_client, tenant, provider.id, msgid) == {
                f"copy:{w}" for w in where
            }
        assert recorded == 2
        assert metrics.value("email_service_gmail_copies_total") == 2
    else:
        assert copies_of(redis_client, tenant, provider.id, 1001) == set()
        assert recorded == 0
