"""The API calls that open real IMAP connections to Dovecot: test, folders, live status."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from email_service.devserver.dovecot import DovecotServer
from email_service.model import password_secret_name
from email_service.settings import Settings
from tests.conftest import MailUser
from tests.helpers import make_message
from tests.integration.api_harness import ApiHarness, api_environ, provider_body

pytestmark = pytest.mark.integration

PROVIDERS = "/api/v1/providers"


def create(api: ApiHarness, tenant: str, body: dict[str, Any]) -> str:
    reply = api.call("POST", PROVIDERS, tenant=tenant, json_body=body)
    assert reply.status == 201, reply
    provider_id: str = reply.json()["id"]
    return provider_id


def test_connection_test_passes_and_reports_capabilities(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    dovecot.create_folder(mail_user.name, "Support")
    provider_id = create(
        api, tenant, provider_body(dovecot, mail_user, folders=["inbox", "Support"])
    )
    reply = api.call("POST", f"{PROVIDERS}/{provider_id}/test", tenant=tenant)
    assert reply.status == 200, reply
    result = reply.json()
    assert result["ok"] is True, result
    assert result["stage"] == "done" and result["error"] is None
    assert "IDLE" in result["capabilities"]
    assert {"INBOX", "Support"} <= set(result["foldersFound"])
    assert result["missingFolders"] == []


@pytest.mark.parametrize(
    ("change", "stage", "message"),
    [
        ({"password": "wrong-password"}, "login", "rejected the login"),
        ({"folders": ["INBOX", "Nope"]}, "folders", "Nope"),
        ({"port": "closed"}, "connect", "refused"),
        ({"security": "tls", "port": "imaps"}, "tls", "did not verify"),
    ],
    ids=["wrong-password", "missing-folder", "closed-port", "untrusted-certificate"],
)
def test_connection_test_says_where_it_failed(
    api: ApiHarness,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    change: dict[str, Any],
    stage: str,
    message: str,
) -> None:
    body = provider_body(dovecot, mail_user)
    if change.get("port") == "closed":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            change = {"port": sock.getsockname()[1]}
    elif change.get("port") == "imaps":
        change = {**change, "port": dovecot.imaps_port, "host": "localhost"}
    provider_id = create(api, tenant, {**body, **change})
    result = api.call("POST", f"{PROVIDERS}/{provider_id}/test", tenant=tenant).json()
    assert result["ok"] is False
    assert result["stage"] == stage, result
    assert message in result["error"]


def test_operator_ca_file_makes_tls_verify(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    body = provider_body(dovecot, mail_user, host="localhost", port=dovecot.imaps_port)
    provider_id = create(api, tenant, {**body, "security": "tls"})
    with api.parts.engine.begin() as connection:
        connection.execute(
            text("UPDATE imap_email_provider_config SET tls_ca_file = :ca WHERE tenant = :t"),
            {"ca": str(dovecot.ca_file), "t": tenant},
        )
    result = api.call("POST", f"{PROVIDERS}/{provider_id}/test", tenant=tenant).json()
    assert result["ok"] is True, result


def test_connection_test_is_time_bound(
    environ: dict[str, str], tenant: str, mail_user: MailUser
) -> None:
    settings = Settings.from_env(
        api_environ(
            environ, EMAIL_SERVICE_API_IMAP_TIMEOUT_MS="1000", IMAP_CONNECTION_TIMEOUT_MS="30000"
        )
    )
    harness = ApiHarness(settings)
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        try:
            body = {
                "name": "Slow",
                "mailbox": "slow@example.com",
                "host": "127.0.0.1",
                "port": silent.getsockname()[1],
                "security": "none",
                "username": mail_user.name,
                "password": mail_user.password,
            }
            provider_id = create(harness, tenant, body)
            started = time.monotonic()
            result = harness.call("POST", f"{PROVIDERS}/{provider_id}/test", tenant=tenant).json()
            elapsed = time.monotonic() - started
            assert result["ok"] is False
            assert result["stage"] == "timeout", result
            assert 0.9 < elapsed < 3, elapsed
            folders = harness.call("GET", f"{PROVIDERS}/{provider_id}/folders", tenant=tenant)
            assert folders.status == 504 and folders.json()["error"] == "imap_timeout"
        finally:
            harness.close()


def test_folders_lists_the_tree_with_special_use(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    for folder in ("Sent", "Trash", "Projects", "Projects/Alpha"):
        dovecot.create_folder(mail_user.name, folder)
    provider_id = create(
        api, tenant, provider_body(dovecot, mail_user, folders=["INBOX", "Projects/Alpha"])
    )
    reply = api.call("GET", f"{PROVIDERS}/{provider_id}/folders", tenant=tenant)
    assert reply.status == 200, reply
    folders = {f["name"]: f for f in reply.json()["folders"]}
    assert reply.json()["folders"][0]["name"] == "INBOX"
    assert folders["Sent"]["specialUse"] == "sent"
    assert folders["Trash"]["specialUse"] == "trash"
    assert folders["INBOX"]["specialUse"] is None
    assert folders["Projects/Alpha"]["parent"] == "Projects"
    assert folders["Projects/Alpha"]["delimiter"] == "/"
    assert folders["Projects"]["parent"] is None
    assert folders["INBOX"]["monitored"] and folders["Projects/Alpha"]["monitored"]
    assert not folders["Sent"]["monitored"]
    assert all(f["selectable"] for f in folders.values())


def test_folders_with_a_wrong_password_is_a_502(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    provider_id = create(api, tenant, provider_body(dovecot, mail_user, password="wrong"))
    reply = api.call("GET", f"{PROVIDERS}/{provider_id}/folders", tenant=tenant)
    assert reply.status == 502
    assert "rejected the login" in reply.json()["message"]


def test_imap_calls_are_rate_limited_per_tenant(
    environ: dict[str, str], dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    harness = ApiHarness(
        Settings.from_env(api_environ(environ, EMAIL_SERVICE_API_IMAP_CALLS_PER_MINUTE="2"))
    )
    try:
        provider_id = create(harness, tenant, provider_body(dovecot, mail_user))
        other_tenant = str(uuid.uuid4())
        other_id = create(harness, other_tenant, provider_body(dovecot, mail_user))
        calls = [
            ("POST", f"{PROVIDERS}/{provider_id}/test"),
            ("GET", f"{PROVIDERS}/{provider_id}/folders"),
        ]
        assert [harness.call(m, p, tenant=tenant).status for m, p in calls] == [200, 200]
        limited = harness.call("GET", f"{PROVIDERS}/{provider_id}/status?live=true", tenant=tenant)
        assert limited.status == 429, limited
        assert limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 30
        # not an IMAP call: not limited
        assert harness.call("GET", f"{PROVIDERS}/{provider_id}/status", tenant=tenant).status == 200
        # another tenant has its own bucket
        other = harness.call("POST", f"{PROVIDERS}/{other_id}/test", tenant=other_tenant)
        assert other.status == 200
        metrics = harness.call("GET", "/metrics").body.decode()
        assert (
            'email_service_api_imap_calls_total{kind="status",outcome="rate_limited"} 1' in metrics
        )
    finally:
        harness.close()


def test_live_status_counts_pending_uids(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    from email_service.model import FolderCursor, FolderKey
    from email_service.store.cursors import CursorStore

    for n in range(4):
        dovecot.deliver(mail_user.name, make_message(f"m{n}"))
    provider_id = create(api, tenant, provider_body(dovecot, mail_user))
    live = api.call("GET", f"{PROVIDERS}/{provider_id}/status?live=true", tenant=tenant).json()
    inbox = live["folders"][0]
    assert live["live"]["error"] is None
    assert inbox["server"]["messages"] == 4
    assert inbox["cursor"] is None and inbox["pendingUids"] is None
    uid_validity = inbox["server"]["uidValidity"]
    CursorStore(api.parts.engine).save_baseline(
        FolderKey(tenant, provider_id, "INBOX"), FolderCursor(uid_validity, 1), 0
    )
    live = api.call("GET", f"{PROVIDERS}/{provider_id}/status?live=true", tenant=tenant).json()
    assert live["folders"][0]["pendingUids"] == 3
    assert live["folders"][0]["cursor"]["lastUid"] == 1
    bad = api.call("GET", f"{PROVIDERS}/{provider_id}/status?live=yes", tenant=tenant)
    assert bad.status == 422 and bad.json()["fields"][0]["field"] == "live"


def test_a_provider_without_a_readable_password_says_so(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    provider_id = create(api, tenant, provider_body(dovecot, mail_user))
    api.parts.secrets.delete_secret(tenant, password_secret_name(provider_id))
    assert (
        api.call("GET", f"{PROVIDERS}/{provider_id}", tenant=tenant).json()["hasPassword"] is False
    )
    result = api.call("POST", f"{PROVIDERS}/{provider_id}/test", tenant=tenant).json()
    assert result["ok"] is False and result["stage"] == "credentials"
    folders = api.call("GET", f"{PROVIDERS}/{provider_id}/folders", tenant=tenant)
    assert folders.status == 409 and folders.json()["error"] == "credentials_unavailable"
    api.call(
        "PATCH",
        f"{PROVIDERS}/{provider_id}",
        tenant=tenant,
        json_body={"password": mail_user.password},
    )
    assert api.call("POST", f"{PROVIDERS}/{provider_id}/test", tenant=tenant).json()["ok"] is True
