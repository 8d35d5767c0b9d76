"""Pause, resume, reconnect and resync through the API take effect on a running worker."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from email_service.model import FolderKey
from tests.conftest import MailUser
from tests.helpers import make_message, stream_events, subjects, wait_for, wait_for_stream_entries
from tests.integration.api_harness import ApiHarness, provider_body
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.integration

PROVIDERS = "/api/v1/providers"


def status(api: ApiHarness, tenant: str, provider_id: str) -> dict[str, Any]:
    reply = api.call("GET", f"{PROVIDERS}/{provider_id}/status", tenant=tenant)
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.json()
    return body


def action(api: ApiHarness, tenant: str, provider_id: str, name: str, body: Any = None) -> None:
    reply = api.call("POST", f"{PROVIDERS}/{provider_id}/{name}", tenant=tenant, json_body=body)
    assert reply.status == 202, reply
    assert reply.json()["action"] == name


def start_following(
    api: ApiHarness, worker: InProcessWorker, dovecot: DovecotServer, user: MailUser, tenant: str
) -> str:
    created = api.call("POST", PROVIDERS, tenant=tenant, json_body=provider_body(dovecot, user))
    assert created.status == 201, created
    worker.start()
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="listener in IDLE")
    provider_id: str = created.json()["id"]
    return provider_id


def inbox_listener(worker: InProcessWorker) -> object | None:
    assert worker.supervisor is not None
    loops = [loop for lid, loop in worker.supervisor.listeners.items() if lid[2] == "INBOX"]
    return loops[0] if loops and not loops[0].stopped else None


def test_pause_stops_and_releases_resume_catches_up(
    api: ApiHarness,
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    provider_id = start_following(api, worker, dovecot, mail_user, tenant)
    running = status(api, tenant, provider_id)
    assert running["state"] == "active"
    assert running["lease"]["live"] is True
    assert running["lease"]["holder"] == worker.parts.worker_id
    assert running["folders"][0]["mode"] == "idle"

    action(api, tenant, provider_id, "pause")
    wait_for(lambda: worker.listener_states() == [], timeout_s=10, what="listeners stopped")
    wait_for(
        lambda: status(api, tenant, provider_id)["lease"]["holder"] is None,
        timeout_s=10,
        what="lease released",
    )
    paused = status(api, tenant, provider_id)
    assert paused["state"] == "paused"
    assert paused["folders"][0]["mode"] == "stopped"
    assert api.call("GET", f"{PROVIDERS}/{provider_id}", tenant=tenant).json()["isPaused"] is True
    dovecot.deliver(mail_user.name, make_message("while paused"))

    action(api, tenant, provider_id, "resume")
    events = wait_for_stream_entries(redis_client, stream, 1)
    assert subjects(events) == ["while paused"]
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE again")
    resumed = status(api, tenant, provider_id)
    assert resumed["state"] == "active" and resumed["lease"]["live"] is True
    inbox = resumed["folders"][0]
    assert inbox["events"] == 1 and inbox["deadLetters"] == 0
    assert inbox["lastEventAt"] is not None
    assert inbox["cursor"]["lastUid"] == 1


def test_reconnect_restarts_the_connections(
    api: ApiHarness,
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    provider_id = start_following(api, worker, dovecot, mail_user, tenant)
    before = inbox_listener(worker)
    assert before is not None
    action(api, tenant, provider_id, "reconnect")
    wait_for(
        lambda: (now := inbox_listener(worker)) is not None and now is not before,
        timeout_s=10,
        what="a new INBOX connection",
    )
    wait_for(lambda: worker.listener_states() == ["idle"], timeout_s=10, what="IDLE again")
    dovecot.deliver(mail_user.name, make_message("after reconnect"))
    assert subjects(wait_for_stream_entries(redis_client, stream, 1)) == ["after reconnect"]


def test_resync_rebaselines_to_the_newest_window_without_republishing(
    api: ApiHarness,
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    provider_id = start_following(api, worker, dovecot, mail_user, tenant)
    for n in range(2):
        dovecot.deliver(mail_user.name, make_message(f"first {n}"))
    wait_for_stream_entries(redis_client, stream, 2)
    key = FolderKey(tenant, provider_id, "INBOX")
    cursors = worker.parts.listener_context.cursors
    wait_for(
        lambda: (c := cursors.load_cursor(key)) and c.last_uid == 2, timeout_s=5, what="cursor 2"
    )

    # A resync with nothing new: the listener re-baselines below UIDs already published, and
    # the publisher's mark keeps them from going out twice.
    before = status(api, tenant, provider_id)["folders"][0]["cursor"]["updatedAt"]
    action(api, tenant, provider_id, "resync")
    wait_for(
        lambda: (
            (c := status(api, tenant, provider_id)["folders"][0]["cursor"]) is not None
            and c["updatedAt"] != before
            and c["lastUid"] == 2
        ),
        timeout_s=10,
        what="a new baseline caught up to uid 2",
    )
    assert subjects(stream_events(redis_client, stream)) == ["first 0", "first 1"]

    # A backlog built up while paused is skipped by a resync: only the newest five come.
    action(api, tenant, provider_id, "pause")
    wait_for(lambda: worker.listener_states() == [], timeout_s=10, what="paused")
    for n in range(8):
        dovecot.deliver(mail_user.name, make_message(f"backlog {n}"))
    action(api, tenant, provider_id, "resync", {"folders": ["INBOX"]})
    action(api, tenant, provider_id, "resume")
    wait_for(lambda: (c := cursors.load_cursor(key)) and c.last_uid == 10, timeout_s=10, what="10")
    assert subjects(stream_events(redis_client, stream)) == ["first 0", "first 1"] + [
        f"backlog {n}" for n in range(3, 8)
    ]
    refused = api.call(
        "POST", f"{PROVIDERS}/{provider_id}/resync", tenant=tenant, json_body={"folders": ["Sent"]}
    )
    assert refused.status == 422 and refused.json()["fields"][0]["field"] == "folders[0]"


def test_status_shows_polling_folders_beyond_the_budget(
    api: ApiHarness,
    worker: InProcessWorker,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
) -> None:
    for folder in ("Support", "Billing"):
        dovecot.create_folder(mail_user.name, folder)
    body = provider_body(
        dovecot, mail_user, folders=["Support", "INBOX", "Billing"], maxConnections=2
    )
    created = api.call("POST", PROVIDERS, tenant=tenant, json_body=body)
    provider_id = created.json()["id"]
    worker.start()
    wait_for(
        lambda: sorted(worker.listener_states()) == ["idle", "polling"],
        timeout_s=10,
        what="one IDLE listener and one poller",
    )
    modes = {f["folder"]: f["mode"] for f in status(api, tenant, provider_id)["folders"]}
    assert modes == {"INBOX": "idle", "Support": "polling", "Billing": "polling"}
