"""The OAuth connect flow and refresh under attack: the operator's app credentials, hostile
token endpoints, key rotation with flows pending, and callbacks from someone else."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import text

from email_service.api.auth import sign_token
from email_service.cli.main import run as run_cli
from email_service.model import AUTH_OAUTH2, ImapEndpoint, NewProvider, ProviderConfig, Security
from email_service.security.secretbox import generate_key
from email_service.store.provider_admin import ProviderAdmin, ProviderSecrets
from tests.helpers import wait_for
from tests.integration.api_harness import ApiHarness
from tests.integration.oauth_fixtures import (
    CALLBACK,
    callback,
    code_for,
    grant_expired,
    initiate,
    oauth_settings,
)
from tests.integration.service import InProcessWorker
from tests.oauth_server import OAuthTestServer

OPERATOR_ID = "operator-app-client-id"
OPERATOR_SECRET = "operator-app-client-secret-0123456789"
OPERATOR_APP = {
    "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID": OPERATOR_ID,
    "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_SECRET": OPERATOR_SECRET,
}
PROVIDERS = "/api/v1/providers"


def _google_body(**extra: object) -> dict[str, object]:
    return {
        "name": "Gmail",
        "mailbox": "support@example.com",
        "username": "support@example.com",
        "providerType": "google",
        "authType": "oauth2",
        "host": "93.184.216.34",  # a public literal: no DNS in tests
        **extra,
    }


def test_a_preset_provider_with_its_own_endpoints_must_bring_its_own_client(
    oauth_environ: dict[str, str], oauth_server: OAuthTestServer, tenant: str
) -> None:
    api = ApiHarness(oauth_settings(oauth_environ, **OPERATOR_APP))
    try:
        for own, missing in (
            ({"oauthTokenUrl": oauth_server.token_url}, "oauthClientId"),
            ({"oauthAuthorizeUrl": oauth_server.authorize_url}, "oauthClientId"),
            (
                {"oauthTokenUrl": oauth_server.token_url, "oauthClientId": "own-id"},
                "oauthClientSecret",
            ),
        ):
            reply = api.call("POST", PROVIDERS, tenant=tenant, json_body=_google_body(**own))
            assert reply.status == 422, (own, reply)
            assert missing in [f["field"] for f in reply.json()["fields"]], reply
        preset = api.call("POST", PROVIDERS, tenant=tenant, json_body=_google_body())
        assert preset.status == 201, preset  # the preset's endpoints with the operator's app
    finally:
        api.close()


def test_the_operators_app_credentials_never_reach_a_tenants_token_endpoint(
    oauth_environ: dict[str, str],
    make_worker: Callable[..., InProcessWorker],
    oauth_server: OAuthTestServer,
    tenant: str,
) -> None:
    worker = make_worker(**OPERATOR_APP)
    api = ApiHarness(oauth_settings(oauth_environ, **OPERATOR_APP))
    try:
        provider_id = ProviderAdmin.of(worker.parts).create(
            NewProvider(
                tenant=tenant,
                name="Gmail",
                mailbox="support@example.com",
                endpoint=ImapEndpoint("imap.gmail.com", 993, Security.TLS),
                username="support@example.com",
                provider_type="google",
                auth_type=AUTH_OAUTH2,
            ),
            ProviderSecrets(),
        )
        started = initiate(api, tenant, provider_id)  # the preset's consent page: fine
        assert f"client_id={OPERATOR_ID}" in started["authUrl"]
        # Then the tenant points the row at a token endpoint of its own (the tables are
        # the product's to write), and finishes the flow with any code.
        with worker.parts.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE imap_email_provider_config SET oauth_token_url = :url "
                    "WHERE email_provider_id = :id AND tenant = :tenant"
                ),
                {"url": oauth_server.token_url, "id": provider_id, "tenant": tenant},
            )
        status, error = callback(api, "any-code", started["state"], tenant=tenant)
        assert (status, error) == (409, "oauth_client_missing")

        provider = worker.parts.providers.find_provider(provider_id, tenant)
        grant_expired(worker, provider, oauth_server)  # the worker must refresh it
        worker.start()
        record = wait_for(
            lambda: (
                (r := worker.parts.providers.load_record(provider_id, tenant)).error_message and r
            ),
            timeout_s=15,
            what="the refresh refused and recorded",
        )
        assert "oauth_client_id" in (record.error_message or "")
    finally:
        api.close()
    sent = [value for client in oauth_server.log.token_clients for value in client]
    assert OPERATOR_ID not in sent and OPERATOR_SECRET not in sent


@pytest.mark.parametrize(
    "reply",
    [
        "redirect",
        (400, "application/json", '{"error": {"INTERNAL-DATA": 1}, "internal": "INTERNAL-DATA"}'),
        (400, "application/json", json.dumps({"error": "invalid_request\u001b[31m",
                                              "error_description": "\u0000desc" * 500})),
        (400, "text/plain", 'INFO {"server_id":"INTERNAL-DATA","version":"2.10"}'),
        (200, "text/html", "<html>INTERNAL-DATA</html>"),
    ],
    ids=["redirect", "non-standard-error", "control-characters", "banner", "html"],
)  # fmt: skip
def test_a_hostile_token_endpoint_gets_no_redirect_followed_and_nothing_reflected(
    oauth_api: ApiHarness,
    oauth_provider: ProviderConfig,
    oauth_server: OAuthTestServer,
    tenant: str,
    reply: str | tuple[int, str, str],
) -> None:
    provider_id = oauth_provider.id
    started = initiate(oauth_api, tenant, provider_id)
    code = code_for(started)
    if reply == "redirect":
        oauth_server.token_redirect = True
    else:
        assert isinstance(reply, tuple)
        oauth_server.token_reply = reply
    query = f"code={code}&state={started['state']}"
    answer = oauth_api.call("GET", f"{CALLBACK}?{query}", tenant=tenant)
    assert 400 <= answer.status < 600 and answer.status != 500, answer
    body = answer.body.decode()
    assert "INTERNAL" not in body and "\\u001b" not in body and "\\u0000" not in body, body
    assert len(answer.json()["message"]) < 400
    assert oauth_server.log.internal_requests == []  # the 307 was not followed


def test_keys_rotate_keeps_pending_connect_flows_usable(
    oauth_environ: dict[str, str], oauth_provider: ProviderConfig, tenant: str
) -> None:
    provider_id = oauth_provider.id
    old, new, other = oauth_environ["EMAIL_SERVICE_SECRET_KEYS"], generate_key(), generate_key()

    def api_with(keys: str) -> ApiHarness:
        return ApiHarness(oauth_settings(oauth_environ, EMAIL_SERVICE_SECRET_KEYS=keys))

    before = api_with(old)
    try:
        started = initiate(before, tenant, provider_id)
    finally:
        before.close()
    rotating = {**oauth_environ, "EMAIL_SERVICE_SECRET_KEYS": f"{new},{old}"}
    assert run_cli(["keys", "rotate"], rotating) == 0

    after = api_with(new)  # the old key removed
    stranger = api_with(f"{other},{new}")  # a flow sealed with a key `after` does not have
    try:
        unreadable = initiate(stranger, tenant, provider_id)
        assert callback(after, code_for(unreadable), unreadable["state"], tenant=tenant) == (
            409,
            "flow_unreadable",
        )
        assert callback(after, code_for(started), started["state"], tenant=tenant) == (302, "")
        # the unreadable flow was not used up: with its key back, it completes
        assert callback(stranger, code_for(unreadable), unreadable["state"], tenant=tenant) == (
            302,
            "",
        )
    finally:
        after.close()
        stranger.close()


def test_only_the_user_who_started_the_flow_can_finish_it(
    oauth_api: ApiHarness, oauth_provider: ProviderConfig, tenant: str
) -> None:
    provider_id = oauth_provider.id
    started = initiate(oauth_api, tenant, provider_id)
    query = f"code={code_for(started)}&state={started['state']}"
    victim = oauth_api.call("GET", f"{CALLBACK}?{query}")  # a browser sent the consent link
    assert victim.status == 401, victim
    colleague = sign_token(oauth_api.settings, tenant, subject="someone-else")
    other_user = oauth_api.call(
        "GET", f"{CALLBACK}?{query}", headers={"Authorization": f"Bearer {colleague}"}
    )
    assert (other_user.status, other_user.json()["error"]) == (403, "invalid_state_caller")
    status = oauth_api.call("GET", f"{PROVIDERS}/{provider_id}", tenant=tenant).json()["status"]
    assert status != "connected"
    assert oauth_api.call("GET", f"{CALLBACK}?{query}", tenant=tenant).status == 302
