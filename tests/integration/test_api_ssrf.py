"""The server-side request forgery guard, through the API, with private hosts refused (default).

IP literals and ``localhost`` go through the system resolver; names that would need a DNS
server (``metadata.test`` → 169.254.169.254 ...) come from a fixed table handed to the API
the way /etc/hosts would answer, since these machines have no DNS of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from email_service.devserver.dovecot import DovecotServer
from email_service.settings import Settings
from tests.conftest import MailUser
from tests.integration.api_harness import ApiHarness, api_environ, provider_body, static_resolver

pytestmark = pytest.mark.integration

PROVIDERS = "/api/v1/providers"

NAMES = {
    "metadata.test": ["169.254.169.254"],
    "intranet.test": ["10.0.0.5"],
    "loopback.test": ["127.0.0.1"],
    "half-private.test": ["93.184.216.34", "10.0.0.5"],
    "mapped.test": ["::ffff:169.254.169.254"],
    "public.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
}


@pytest.fixture
def api(make_api: Callable[..., ApiHarness]) -> ApiHarness:
    return make_api(static_resolver(NAMES), IMAP_ALLOW_PRIVATE_HOSTS="false")


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.0.0.5", "private"),
        ("192.168.1.10", "private"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse
        ("224.0.0.251", "multicast"),
        ("localhost", "loopback"),
        ("metadata.test", "link-local"),
        ("intranet.test", "private"),
        ("loopback.test", "loopback"),
        ("half-private.test", "private"),
        ("mapped.test", "link-local"),
    ],
)
def test_private_hosts_are_refused_on_create(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str, host: str, kind: str
) -> None:
    reply = api.call(
        "POST", PROVIDERS, tenant=tenant, json_body=provider_body(dovecot, mail_user, host=host)
    )
    assert reply.status == 422, reply
    (problem,) = reply.json()["fields"]
    assert problem["field"] == "host"
    assert f"resolves to a {kind} address" in problem["message"]
    assert "169.254" not in problem["message"] and "10.0" not in problem["message"]
    assert api.call("GET", PROVIDERS, tenant=tenant).json() == {"providers": [], "nextCursor": None}


def test_unresolvable_hosts_are_refused(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    reply = api.call(
        "POST",
        PROVIDERS,
        tenant=tenant,
        json_body=provider_body(dovecot, mail_user, host="nowhere.invalid"),
    )
    assert reply.status == 422
    assert "does not resolve" in reply.json()["fields"][0]["message"]


def test_public_hosts_are_accepted_and_changing_to_private_is_refused(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    created = api.call(
        "POST",
        PROVIDERS,
        tenant=tenant,
        json_body=provider_body(dovecot, mail_user, host="public.test"),
    )
    assert created.status == 201, created
    one = f"{PROVIDERS}/{created.json()['id']}"
    reply = api.call("PATCH", one, tenant=tenant, json_body={"host": "metadata.test"})
    assert reply.status == 422 and reply.json()["fields"][0]["field"] == "host"
    assert api.call("GET", one, tenant=tenant).json()["host"] == "public.test"


def test_a_stored_private_host_is_refused_before_connecting(
    api: ApiHarness,
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
) -> None:
    # Saved while an operator allowed private hosts (or written straight into the tables).
    allowing = ApiHarness(Settings.from_env(api_environ(environ)))
    try:
        created = allowing.call(
            "POST", PROVIDERS, tenant=tenant, json_body=provider_body(dovecot, mail_user)
        )
        assert created.status == 201
        one = f"{PROVIDERS}/{created.json()['id']}"
        assert allowing.call("POST", f"{one}/test", tenant=tenant).json()["ok"] is True
    finally:
        allowing.close()

    result: dict[str, Any] = api.call("POST", f"{one}/test", tenant=tenant).json()
    assert result["ok"] is False and result["stage"] == "resolve"
    assert "loopback" in result["error"] and result["capabilities"] == []
    folders = api.call("GET", f"{one}/folders", tenant=tenant)
    assert folders.status == 422 and folders.json()["error"] == "host_refused"
    live = api.call("GET", f"{one}/status?live=true", tenant=tenant).json()
    assert "loopback" in live["live"]["error"]
    assert live["folders"][0]["server"] is None
