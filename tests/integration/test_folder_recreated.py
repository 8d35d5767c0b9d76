"""A folder deleted and created again while the listener is connected, the way servers that
are not here do it (Courier-IMAP), on the scriptable fake server; Dovecot and Cyrus are in
``tests/e2e/test_imap_servers.py``. Everything but the server is real: the worker's
threads, PostgreSQL, Redis and the publish script."""

from __future__ import annotations

import time

import pytest
import redis

from email_service.devserver.fake_imap import FakeFolder, FakeImapServer, FakeMessage
from email_service.settings import Settings
from tests.helpers import make_message, stream_events, subjects, wait_for
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.integration

OLD_VALIDITY, NEW_VALIDITY = 7, 8


def old_folder(size: int) -> dict[str, FakeFolder]:
    messages = [FakeMessage(uid, make_message(f"old {uid}")) for uid in range(1, size + 1)]
    return {"INBOX": FakeFolder(OLD_VALIDITY, messages)}


def validities(events: list[dict[str, object]]) -> list[int]:
    return [e["payload"]["emailData"]["imap"]["uidValidity"] for e in events]  # type: ignore[index]


@pytest.mark.parametrize("old_size", [5, 14], ids=["cursor-at-5", "cursor-at-14"])
def test_courier_announcing_exists_for_the_new_folder_rebaselines_at_once(
    worker: InProcessWorker,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
    old_size: int,
) -> None:
    """Courier keeps the session on the new folder and says only ``* 1 EXISTS``. Before, the
    worker published the new folder's UIDs above the old cursor under the old UIDVALIDITY
    and skipped the rest (cursor 5), or published nothing at all (cursor 14)."""
    with FakeImapServer.start(folders=old_folder(old_size)) as server:
        provider = worker.add_fake_provider(tenant, server.port)
        worker.start()
        wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE")
        window = worker.settings.imap.max_emails_per_sync
        assert len(stream_events(redis_client, stream)) == min(window, old_size)
        assert worker.cursor(provider) == old_size

        server.recreate_folder("INBOX", NEW_VALIDITY)
        recreated_at = time.monotonic()
        for uid in range(1, 4):
            server.add_message("INBOX", FakeMessage(uid, make_message(f"new {uid}")))
            wait_for(
                lambda n=uid: f"new {n}" in subjects(stream_events(redis_client, stream)),
                timeout_s=10,
                what=f"new {uid} published",
            )
        noticed_s = time.monotonic() - recreated_at

    events = stream_events(redis_client, stream)
    after = events[min(window, old_size) :]
    assert subjects(after) == ["new 1", "new 2", "new 3"]
    assert validities(after) == [NEW_VALIDITY] * 3
    wait_for(lambda: worker.cursor(provider) == 3, timeout_s=5, what="the cursor at 3")
    assert noticed_s < 5, f"the new folder's mail took {noticed_s:.1f}s"


@pytest.fixture
def quick_reconciliation(environ: dict[str, str]) -> Settings:
    return Settings.from_env({**environ, "IMAP_IDLE_REISSUE_MS": "1000"})


def test_a_folder_swapped_without_any_sign_is_noticed_at_the_next_reconciliation(
    quick_reconciliation: Settings,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    """No EXPUNGE, no EXISTS, no BYE: only re-examining at each IDLE re-issue finds the new
    UIDVALIDITY, within IMAP_IDLE_REISSUE_MS (1 s here)."""
    worker = InProcessWorker(quick_reconciliation)
    try:
        with FakeImapServer.start(folders=old_folder(3)) as server:
            provider = worker.add_fake_provider(tenant, server.port)
            worker.start()
            wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE")
            server.recreate_folder("INBOX", NEW_VALIDITY)
            swapped_at = time.monotonic()
            for uid in (1, 2):
                message = FakeMessage(uid, make_message(f"unannounced {uid}"))
                server.add_message("INBOX", message, announce=False)
            events = wait_for(
                lambda: len(e := stream_events(redis_client, stream)) >= 5 and e,
                timeout_s=10,
                what="the swapped folder's mail",
            )
            noticed_s = time.monotonic() - swapped_at
        assert subjects(events[3:]) == ["unannounced 1", "unannounced 2"]
        assert validities(events[3:]) == [NEW_VALIDITY] * 2
        wait_for(lambda: worker.cursor(provider) == 2, timeout_s=5, what="the cursor at 2")
        assert noticed_s < 1 + 3, f"noticed after {noticed_s:.1f}s with a 1 s re-issue"
    finally:
        worker.close()
