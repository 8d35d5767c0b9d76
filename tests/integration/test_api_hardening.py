"""Hostile input through the real API (PostgreSQL, Redis): a clear 4xx naming the field, never
a 5xx; PATCH changes all or nothing; deleting one provider never touches another's secrets."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import text

from email_service.devserver.dovecot import DovecotServer
from email_service.model import password_secret_name
from tests.conftest import MailUser
from tests.helpers import fail_writes_to
from tests.integration.api_harness import ApiHarness, provider_body

pytestmark = pytest.mark.integration

PROVIDERS = "/api/v1/providers"


def raw_json(api: ApiHarness, method: str, path: str, tenant: str, body: str) -> Any:
    """Send ``body`` as it is (json.dumps would refuse a lone surrogate only on encode)."""
    return api.call(
        method,
        path,
        tenant=tenant,
        body=body.encode(),
        headers={"Content-Type": "application/json"},
    )


def create(api: ApiHarness, dovecot: DovecotServer, user: MailUser, tenant: str) -> Any:
    reply = api.call("POST", PROVIDERS, tenant=tenant, json_body=provider_body(dovecot, user))
    assert reply.status == 201, reply
    return reply.json()


def field_names(reply: Any) -> set[str]:
    return {problem["field"] for problem in reply.json().get("fields", [])}


def oauth_body(token_url: str) -> dict[str, Any]:
    return {
        "name": "OAuth",
        "mailbox": "support@example.com",
        "host": "127.0.0.1",
        "port": 993,
        "security": "tls",
        "username": "support@example.com",
        "authType": "oauth2",
        "oauthClientId": "client",
        "oauthAuthorizeUrl": "https://127.0.0.1/authorize",
        "oauthTokenUrl": token_url,
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:99999/token",
        "https://127.0.0.1:abc/token",
        "https://127.0.0.1:-1/token",
        "https://127.0.0.1:0/token",
        "https://:pw@127.0.0.1/token",
        "https://user:pw@127.0.0.1/token",
    ],
    ids=["port-too-large", "port-not-a-number", "port-negative", "port-zero", "password", "user"],
)
def test_bad_token_urls_are_a_422_naming_the_field(api: ApiHarness, tenant: str, url: str) -> None:
    reply = api.call("POST", PROVIDERS, tenant=tenant, json_body=oauth_body(url))
    assert reply.status == 422, reply
    assert field_names(reply) == {"oauthTokenUrl"}


def test_deeply_nested_json_is_a_400(api: ApiHarness, tenant: str) -> None:
    reply = raw_json(api, "POST", PROVIDERS, tenant, "[" * 30_000 + "]" * 30_000)
    assert reply.status == 400, reply
    assert reply.json()["error"] == "invalid_json"


@pytest.mark.parametrize("field", ["name", "mailbox", "username", "password", "folders"])
def test_a_lone_surrogate_is_a_422_naming_the_field(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str, field: str
) -> None:
    body = json.dumps(provider_body(dovecot, mail_user))
    value = {"folders": '["INBOX\\ud800"]', "mailbox": '"a\\ud800@example.com"'}.get(
        field, '"bad\\ud800"'
    )
    body = body[:-1] + f', "{field}": {value}' + "}"  # a later key wins in JSON objects
    reply = raw_json(api, "POST", PROVIDERS, tenant, body)
    assert reply.status == 422, reply
    assert field_names(reply) in ({field}, {"folders[0]"})
    one = f"{PROVIDERS}/{create(api, dovecot, mail_user, tenant)['id']}"
    patched = raw_json(api, "PATCH", one, tenant, "{" + f'"{field}": {value}' + "}")
    assert patched.status == 422, patched
    resync = raw_json(api, "POST", f"{one}/resync", tenant, '{"folders": ["INBOX\\ud800"]}')
    assert resync.status == 422, resync


def test_patch_changes_nothing_when_one_field_is_bad(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    created = create(api, dovecot, mail_user, tenant)
    provider_id = created["id"]
    body = '{"password": "NEW", "name": "bad\\ud800"}'
    reply = raw_json(api, "PATCH", f"{PROVIDERS}/{provider_id}", tenant, body)
    assert reply.status == 422, reply
    assert api.parts.secrets.load_secret(tenant, password_secret_name(provider_id)) == (
        mail_user.password
    )
    assert api.call("GET", f"{PROVIDERS}/{provider_id}", tenant=tenant).json() == created


def test_an_oversized_authorization_header_is_a_clean_json_4xx(
    api: ApiHarness, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = "eyJ" + "A" * 9000
    with caplog.at_level(logging.DEBUG):
        reply = api.call("GET", PROVIDERS, headers={"Authorization": f"Bearer {token}"})
    assert 400 <= reply.status < 500, reply
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json()["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "AAAAAAAA" not in caplog.text


def test_unknown_field_names_are_not_echoed_in_full(api: ApiHarness, tenant: str) -> None:
    long_name = "x" * 60_000
    reply = api.call("POST", PROVIDERS, tenant=tenant, json_body={long_name: 1})
    assert reply.status == 422, reply
    assert len(reply.body) < 2_000
    many = {f"k{i}": 1 for i in range(5_000)}
    reply = api.call("POST", PROVIDERS, tenant=tenant, json_body=many)
    assert reply.status == 422, reply
    assert len(reply.body) < 10_000


def test_deleting_provider_percent_leaves_other_secrets_alone(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    """Ids the product writes into the tables may hold LIKE wildcards (``%``, ``_``)."""
    other_id = create(api, dovecot, mail_user, tenant)["id"]
    with api.parts.engine.begin() as connection:
        for provider_id in ("%", "_"):
            connection.execute(
                text(
                    "INSERT INTO email_providers (id, tenant, provider_type, provider_name, "
                    "mailbox, is_active, is_paused, status, created_at, updated_at) VALUES "
                    "(:id, :t, 'imap', 'Wild', 'w@example.com', false, false, 'pending', now(), "
                    "now())"
                ),
                {"id": provider_id, "t": tenant},
            )
            connection.execute(
                text(
                    "INSERT INTO imap_email_provider_config (email_provider_id, tenant, host, "
                    "port, secure, allow_starttls, auth_type, username, folder_filters, "
                    "folder_state, lease_fence, oauth_token_version, created_at, updated_at) "
                    "VALUES (:id, :t, '127.0.0.1', 993, true, false, 'password', 'w', '[]', "
                    "'{}', 0, 0, now(), now())"
                ),
                {"id": provider_id, "t": tenant},
            )
    api.parts.secrets.save_secret(tenant, "imap_password_%", "wild")
    for path in ("%25", "_"):
        assert api.call("DELETE", f"{PROVIDERS}/{path}", tenant=tenant).status == 204
    assert (
        api.parts.secrets.load_secret(tenant, password_secret_name(other_id)) == mail_user.password
    )
    assert api.parts.secrets.load_optional(tenant, "imap_password_%") is None


def test_patch_keeps_the_old_password_when_the_row_write_fails(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    provider_id = create(api, dovecot, mail_user, tenant)["id"]
    with api.parts.engine.begin() as connection:
        fail_writes_to(connection, "imap_email_provider_config", "UPDATE")
    reply = api.call(
        "PATCH", f"{PROVIDERS}/{provider_id}", tenant=tenant, json_body={"password": "NEW"}
    )
    assert reply.status == 503, reply
    assert api.parts.secrets.load_secret(tenant, password_secret_name(provider_id)) == (
        mail_user.password
    )
