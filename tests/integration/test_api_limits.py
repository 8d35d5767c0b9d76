"""What one tenant cannot take from the others: folder listings are bounded, the IMAP call
pool is shared fairly, providers per tenant are capped (real API, PostgreSQL, Redis,
Dovecot, and the scriptable fake IMAP server for a server with two million folders)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from email_service.api.imap_calls import CALLS_PER_TENANT_AT_ONCE, MAX_LISTED_FOLDERS
from email_service.devserver.dovecot import DovecotServer
from email_service.devserver.fake_imap import FakeImapServer, Reply, many_folders
from email_service.model import ImapEndpoint, NewProvider, Security
from tests.conftest import MailUser
from tests.integration.api_harness import ApiHarness, api_with, provider_body

pytestmark = pytest.mark.integration

PROVIDERS = "/api/v1/providers"


def fake_provider(port: int) -> dict[str, Any]:
    return {
        "name": "Huge",
        "mailbox": "huge@example.com",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": "huge",
        "password": "pw",
    }


def create(api: ApiHarness, tenant: str, body: dict[str, Any]) -> str:
    reply = api.call("POST", PROVIDERS, tenant=tenant, json_body=body)
    assert reply.status == 201, reply
    provider_id: str = reply.json()["id"]
    return provider_id


@pytest.fixture
def huge_server() -> Iterator[FakeImapServer]:
    with FakeImapServer.start({"LIST": many_folders(2_000_000)}) as server:
        yield server


def test_a_listing_of_two_million_folders_is_cut_short_and_flagged(
    api: ApiHarness, huge_server: FakeImapServer, tenant: str
) -> None:
    provider_id = create(api, tenant, fake_provider(huge_server.port))
    started = time.monotonic()
    reply = api.call("GET", f"{PROVIDERS}/{provider_id}/folders", tenant=tenant)
    assert reply.status == 200, reply
    assert time.monotonic() - started < 10
    body = reply.json()
    assert body["truncated"] is True
    assert len(body["folders"]) == MAX_LISTED_FOLDERS
    assert body["folders"][0]["name"] == "INBOX"
    test = api.call("POST", f"{PROVIDERS}/{provider_id}/test", tenant=tenant).json()
    assert test["foldersTruncated"] is True and len(test["foldersFound"]) == MAX_LISTED_FOLDERS


def test_a_literal_larger_than_the_listing_bound_is_not_read(api: ApiHarness, tenant: str) -> None:
    def huge_literal(tag: bytes) -> Iterator[bytes]:
        yield b'* LIST () "/" {50000000}\r\n'
        yield b"x" * 65536  # the rest would follow; the client must hang up first

    with FakeImapServer.start({"LIST": huge_literal}) as server:
        provider_id = create(api, tenant, fake_provider(server.port))
        reply = api.call("GET", f"{PROVIDERS}/{provider_id}/folders", tenant=tenant)
    assert reply.status == 200, reply
    assert reply.json() == {"providerId": provider_id, "folders": [], "truncated": True}


def test_dovecot_listings_are_whole(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    dovecot.create_folder(mail_user.name, "Sent")
    provider_id = create(api, tenant, provider_body(dovecot, mail_user))
    body = api.call("GET", f"{PROVIDERS}/{provider_id}/folders", tenant=tenant).json()
    assert body["truncated"] is False
    assert {f["name"] for f in body["folders"]} == {"INBOX", "Sent"}


@pytest.fixture
def stalled_server() -> Iterator[FakeImapServer]:
    """Logs in, then never answers LIST (until the test ends)."""
    release = threading.Event()

    def stall(tag: bytes) -> Iterator[bytes]:
        release.wait(30)
        yield tag + b" OK LIST done\r\n"

    reply: Reply = stall
    with FakeImapServer.start({"LIST": reply}) as server:
        yield server
        release.set()


def test_one_tenants_slow_calls_leave_room_for_another_tenants_test(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    stalled_server: FakeImapServer,
    tenant: str,
) -> None:
    with api_with(environ, EMAIL_SERVICE_API_IMAP_TIMEOUT_MS="6000") as api:
        abuser = create(api, tenant, fake_provider(stalled_server.port))
        other_tenant = str(uuid.uuid4())
        other = create(api, other_tenant, provider_body(dovecot, mail_user))
        with ThreadPoolExecutor(10) as pool:
            listings = [
                pool.submit(api.call, "GET", f"{PROVIDERS}/{abuser}/folders", tenant=tenant)
                for _ in range(10)
            ]
            time.sleep(0.5)  # let the listings take their threads first (not a sync point)
            started = time.monotonic()
            test = api.call("POST", f"{PROVIDERS}/{other}/test", tenant=other_tenant)
            test_s = time.monotonic() - started
            statuses = sorted(f.result().status for f in listings)
        assert test.status == 200 and test.json()["ok"] is True, test
        assert test_s < 3, test_s
        assert statuses.count(504) == CALLS_PER_TENANT_AT_ONCE, statuses
        assert statuses.count(429) == 10 - CALLS_PER_TENANT_AT_ONCE, statuses


def test_providers_per_tenant_are_capped(
    environ: dict[str, str], dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    with api_with(environ, EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT="2") as api:
        for _ in range(2):
            create(api, tenant, provider_body(dovecot, mail_user))
        refused = api.call(
            "POST", PROVIDERS, tenant=tenant, json_body=provider_body(dovecot, mail_user)
        )
        assert refused.status == 409, refused
        assert refused.json()["error"] == "provider_limit_reached"
        assert "EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT" in refused.json()["message"]
        create(api, str(uuid.uuid4()), provider_body(dovecot, mail_user))  # others still can


def test_the_provider_list_comes_in_pages(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    created = [create(api, tenant, provider_body(dovecot, mail_user)) for _ in range(5)]
    seen: list[str] = []
    cursor = None
    for expected in (2, 2, 1):
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.call("GET", PROVIDERS + query, tenant=tenant).json()
        assert len(page["providers"]) == expected
        seen += [p["id"] for p in page["providers"]]
        cursor = page["nextCursor"]
    assert cursor is None
    assert seen == created  # oldest first, none twice, none left out
    bad = (("?limit=0", "limit"), ("?limit=201", "limit"), ("?cursor=x%00", "cursor"))
    for query, field in bad:
        reply = api.call("GET", PROVIDERS + query, tenant=tenant)
        assert reply.status == 422 and reply.json()["fields"][0]["field"] == field, reply


def test_a_page_stays_within_its_byte_bound(api: ApiHarness, tenant: str) -> None:
    """Providers written straight into the tables may carry 100 folders of 1,000 characters."""
    folders = tuple(f"{n:03d}" + "é" * 997 for n in range(100))
    for _ in range(3):
        api.parts.providers.add_provider(
            NewProvider(
                tenant=tenant,
                name="Big",
                mailbox="big@example.com",
                endpoint=ImapEndpoint("imap.example.com", 993, Security.TLS),
                username="big",
                folders=folders,
            )
        )
    reply = api.call("GET", PROVIDERS + "?limit=3", tenant=tenant)
    assert reply.status == 200
    assert len(reply.body) < 1024 * 1024 + 100_000
    assert len(reply.json()["providers"]) == 1 and reply.json()["nextCursor"]
