"""OAuth2 end to end: a real authorization server (tests/oauth_server.py), Dovecot checking
every XOAUTH2/OAUTHBEARER login against its introspection endpoint, real PostgreSQL and
Redis, the real API and an in-process worker (fixtures: ``oauth_fixtures``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from sqlalchemy import Engine, text

from email_service.credentials.tokens import TokenManager
from email_service.devserver.dovecot import DovecotServer
from email_service.model import REAUTH_REQUIRED, ProviderConfig
from email_service.oauth.state import StateClaims, sign_state
from email_service.security.secretbox import SecretBox
from email_service.store.engine import make_engine
from email_service.store.oauth_grants import OAuthGrantStore
from email_service.store.secrets import SecretStore
from tests.helpers import make_message, stream_events, subjects, unique, wait_for
from tests.integration.api_harness import ApiHarness
from tests.integration.oauth_fixtures import (
    REDIRECT_URI,
    STATE_SECRET,
    UI_URL,
    add_oauth_provider,
    callback,
    code_for,
    connect_through_api,
    grant_directly,
    grant_expired,
    initiate,
    oauth_settings,
)
from tests.integration.service import InProcessWorker
from tests.oauth_server import OAuthTestServer


@pytest.fixture
def api(oauth_api: ApiHarness) -> ApiHarness:
    return oauth_api


def deliver(dovecot: DovecotServer, user: str, subject: str) -> None:
    dovecot.deliver(user, make_message(subject=subject))


def test_created_through_the_api_connected_through_the_flow_then_published(
    worker: InProcessWorker,
    api: ApiHarness,
    oauth_dovecot: DovecotServer,
    oauth_server: OAuthTestServer,
    mailbox: str,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    created = api.call(
        "POST",
        "/api/v1/providers",
        tenant=tenant,
        json_body={
            "name": "Support (OAuth)",
            "mailbox": f"{mailbox}@localhost",
            "username": mailbox,
            "host": "127.0.0.1",
            "port": oauth_dovecot.imap_port,
            "security": "none",
            "authType": "oauth2",
            "oauthClientId": oauth_server.client_id,
            "oauthClientSecret": oauth_server.client_secret,
            "oauthAuthorizeUrl": oauth_server.authorize_url,
            "oauthTokenUrl": oauth_server.token_url,
            "oauthScopes": ["mail"],
        },
    )
    assert created.status == 201, created
    provider_id = created.json()["id"]
    assert created.json()["authType"] == "oauth2" and created.json()["hasPassword"] is False
    assert oauth_server.client_secret.encode() not in created.body
    started = api.call(
        "POST",
        "/api/email/oauth/imap/initiate",
        tenant=tenant,
        json_body={"providerId": provider_id},
    ).json()
    query = parse_qs(urlsplit(started["authUrl"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"] == [started["state"]]
    assert query["redirect_uri"] == [REDIRECT_URI] and query["client_id"] == [
        oauth_server.client_id
    ]
    assert query["scope"] == ["mail"]

    reply = connect_through_api(api, tenant, provider_id)
    assert reply.status_code == 302
    assert reply.headers["Location"] == f"{UI_URL}?providerId={provider_id}&status=connected"
    provider = worker.parts.providers.find_provider(provider_id, tenant)
    assert provider.status == "connected"
    refresh_name = provider.refresh_token_secret_name()
    assert (
        worker.parts.secrets.load_secret(tenant, refresh_name) in oauth_server.live_refresh_tokens()
    )

    worker.start()
    deliver(oauth_dovecot, mailbox, "hello over xoauth2")
    wait_for(
        lambda: subjects(stream_events(redis_client, stream)) == ["hello over xoauth2"],
        timeout_s=20,
        what="the event of the mail delivered after connecting",
    )
    assert oauth_server.log.refresh_calls == 0  # the access token from the exchange was used
    assert not oauth_server.expired_logins()


def test_an_oauth_token_url_must_be_https_and_public_unless_private_hosts_are_allowed(
    oauth_environ: dict[str, str], tenant: str
) -> None:
    harness = ApiHarness(oauth_settings(oauth_environ, IMAP_ALLOW_PRIVATE_HOSTS="false"))
    try:
        body = {
            "name": "X",
            "mailbox": "a@example.com",
            "username": "a@example.com",
            "providerType": "microsoft",
            "host": "93.184.216.34",  # a public literal: no DNS in tests
            "authType": "oauth2",
            "oauthClientId": "own-client",  # an own token URL needs an own client
            "oauthClientSecret": "own-client-secret",
        }
        for url, problem in (
            ("http://login.example.com/token", "expected an https URL"),
            ("https://127.0.0.1/token", "loopback"),
        ):
            reply = harness.call(
                "POST", "/api/v1/providers", tenant=tenant, json_body={**body, "oauthTokenUrl": url}
            )
            assert reply.status == 422, reply
            (field,) = reply.json()["fields"]
            assert field["field"] == "oauthTokenUrl" and problem in field["message"]
    finally:
        harness.close()


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_access_token_expiring_during_idle_is_refreshed_before_it_expires(
    mechanism: str,
    make_worker: Callable[..., InProcessWorker],
    oauth_dovecot: DovecotServer,
    oauth_server: OAuthTestServer,
    mailbox: str,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    oauth_server.access_ttl_s = 4  # renewed 1 s before expiry (a quarter of its life)
    worker = make_worker(IMAP_OAUTH_AUTH_MECHANISM=mechanism)
    provider = add_oauth_provider(worker, tenant, oauth_dovecot, oauth_server, mailbox)
    grant_directly(worker, provider, oauth_server)
    refreshes_before = oauth_server.log.refresh_calls
    worker.start()
    wait_for(
        lambda: worker.parts.providers.find_provider(provider.id, tenant).status == "connected",
        timeout_s=15,
        what="the first login",
    )
    sent = []
    deadline = time.monotonic() + 11  # spans at least two renewals
    while time.monotonic() < deadline:
        subject = unique("around-expiry")
        deliver(oauth_dovecot, mailbox, subject)
        sent.append(subject)
        time.sleep(0.6)
    wait_for(
        lambda: sorted(subjects(stream_events(redis_client, stream))) == sorted(sent),
        timeout_s=20,
        what="every message delivered across token renewals, once each",
    )
    assert oauth_server.log.refresh_calls - refreshes_before >= 2
    assert oauth_server.expired_logins() == []  # never logged in with an expired token
    metrics = worker.parts.listener_context.metrics
    assert metrics.value("email_service_oauth_renewals_total") >= 2  # logged in again, not failed
    assert worker.parts.providers.find_provider(provider.id, tenant).status == "connected"


def test_two_workers_racing_to_refresh_make_one_call_and_keep_the_newest_refresh_token(
    make_worker: Callable[..., InProcessWorker],
    oauth_dovecot: DovecotServer,
    oauth_server: OAuthTestServer,
    mailbox: str,
    tenant: str,
    database_url: str,
) -> None:
    worker = make_worker()
    settings = worker.settings
    engines: list[Engine] = []
    try:
        provider = add_oauth_provider(worker, tenant, oauth_dovecot, oauth_server, mailbox)
        access, refresh = grant_expired(worker, provider, oauth_server)
        box = SecretBox(settings.require_secret_keys())
        managers = []
        for replica in ("replica-a", "replica-b"):  # separate engines: two processes' pools
            engine = make_engine(database_url)
            engines.append(engine)
            secrets = SecretStore(engine, box)
            managers.append(
                TokenManager(
                    OAuthGrantStore(engine, secrets),
                    secrets,
                    settings.oauth,
                    allow_private_hosts=True,
                    owner=replica,
                )
            )
        calls_before = oauth_server.log.refresh_calls
        oauth_server.token_latency_s = 0.5  # long enough for everyone to pile up behind the claim
        barrier = threading.Barrier(8)
        tokens: list[str] = []

        def get(manager: TokenManager) -> None:
            barrier.wait()
            tokens.append(manager.access_token(provider).value)

        threads = [threading.Thread(target=get, args=(managers[i % 2],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert oauth_server.log.refresh_calls - calls_before == 1
        assert len(tokens) == 8 and len(set(tokens)) == 1 and tokens[0] != access
        newest = oauth_server.log.issued_refresh_tokens[-1]
        live = oauth_server.live_refresh_tokens()
        assert newest in live and refresh not in live  # rotated once
        stored = worker.parts.secrets.load_secret(tenant, provider.refresh_token_secret_name())
        assert stored == newest
    finally:
        for engine in engines:
            engine.dispose()


def test_revoked_grant_parks_after_one_attempt_and_reconnecting_resumes_from_the_cursor(
    worker: InProcessWorker,
    api: ApiHarness,
    oauth_dovecot: DovecotServer,
    oauth_server: OAuthTestServer,
    mailbox: str,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    oauth_server.access_ttl_s = 4
    provider = add_oauth_provider(worker, tenant, oauth_dovecot, oauth_server, mailbox)
    grant_directly(worker, provider, oauth_server)
    worker.start()
    deliver(oauth_dovecot, mailbox, "before revocation")
    wait_for(
        lambda: subjects(stream_events(redis_client, stream)) == ["before revocation"],
        timeout_s=20,
        what="the first event",
    )
    calls_before = oauth_server.log.refresh_calls
    oauth_server.revoke_all()
    wait_for(
        lambda: worker.parts.providers.find_provider(provider.id, tenant).status == REAUTH_REQUIRED,
        timeout_s=20,
        what="the provider parked as needing re-authorisation",
    )
    deliver(oauth_dovecot, mailbox, "while parked")
    time.sleep(4)  # a renewal period: a parked provider must not try again
    assert oauth_server.log.refresh_calls - calls_before == 1
    record = worker.parts.providers.load_record(provider.id, tenant)
    assert "invalid_grant" in (record.error_message or "")
    assert subjects(stream_events(redis_client, stream)) == ["before revocation"]

    reply = connect_through_api(api, tenant, provider.id)
    assert reply.status_code == 302 and "status=connected" in reply.headers["Location"]
    deliver(oauth_dovecot, mailbox, "after reconnecting")
    wait_for(
        lambda: (
            subjects(stream_events(redis_client, stream))
            == ["before revocation", "while parked", "after reconnecting"]
        ),
        timeout_s=30,
        what="the mail of the parked period, then new mail, once each",
    )


@pytest.mark.parametrize("fault", ["http_503", "timeout"])
def test_token_endpoint_down_is_transient_and_publishing_resumes(
    fault: str,
    make_worker: Callable[..., InProcessWorker],
    oauth_dovecot: DovecotServer,
    oauth_server: OAuthTestServer,
    mailbox: str,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
) -> None:
    worker = make_worker(EMAIL_SERVICE_OAUTH_TIMEOUT_MS="500")
    provider = add_oauth_provider(worker, tenant, oauth_dovecot, oauth_server, mailbox)
    grant_expired(worker, provider, oauth_server)
    if fault == "http_503":
        oauth_server.fail_token_status = 503
    else:
        oauth_server.token_stall_s = 2
    calls_before = oauth_server.log.refresh_calls
    worker.start()
    wait_for(
        lambda: (
            "token endpoint"
            in (worker.parts.providers.load_record(provider.id, tenant).error_message or "")
        ),
        timeout_s=20,
        what="the token endpoint failure recorded on the provider",
    )
    time.sleep(3)
    record = worker.parts.providers.load_record(provider.id, tenant)
    assert record.config.status == "error"  # not reauth_required
    attempts = oauth_server.log.refresh_calls - calls_before
    assert 2 <= attempts <= 12, attempts  # retried, with backoff (max 1.5 s here)
    deliver(oauth_dovecot, mailbox, "after the outage")
    oauth_server.fail_token_status = None
    oauth_server.token_stall_s = 0
    wait_for(
        lambda: subjects(stream_events(redis_client, stream)) == ["after the outage"],
        timeout_s=20,
        what="publishing once the token endpoint is back",
    )


# -- the state of the connect flow ------------------------------------------------------


def test_tampered_state_is_rejected(api: ApiHarness, oauth_provider: ProviderConfig) -> None:
    tenant = oauth_provider.tenant
    started = initiate(api, tenant, oauth_provider.id)
    payload, signature = started["state"].split(".")
    forged = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + signature
    bad_signature = (400, "invalid_state_bad_signature")
    assert callback(api, code_for(started), forged, tenant=tenant) == bad_signature
    assert callback(api, "x", "not-a-state", tenant=tenant) == (400, "invalid_state_malformed")


def test_expired_state_is_rejected(api: ApiHarness, oauth_provider: ProviderConfig) -> None:
    tenant = oauth_provider.tenant
    started = initiate(api, tenant, oauth_provider.id)
    claims = StateClaims("n", tenant, oauth_provider.id, REDIRECT_URI, int(time.time()) - 1)
    expired = sign_state(claims, STATE_SECRET)
    expected = (400, "invalid_state_expired")
    assert callback(api, code_for(started), expired, tenant=tenant) == expected


def test_replayed_state_is_rejected(api: ApiHarness, oauth_provider: ProviderConfig) -> None:
    tenant = oauth_provider.tenant
    started = initiate(api, tenant, oauth_provider.id)
    code = code_for(started)
    assert callback(api, code, started["state"], tenant=tenant) == (302, "")
    assert callback(api, code, started["state"], tenant=tenant) == (400, "invalid_state_used")


def test_state_from_another_tenant_is_rejected(
    api: ApiHarness, oauth_provider: ProviderConfig
) -> None:
    started = initiate(api, oauth_provider.tenant, oauth_provider.id)
    status, error = callback(api, code_for(started), started["state"], tenant=str(uuid.uuid4()))
    assert (status, error) == (403, "invalid_state_tenant")
    # the same flow from its own tenant still works: the refusal did not consume it
    assert (
        callback(api, code_for(started), started["state"], tenant=oauth_provider.tenant)[0] == 302
    )


def test_another_tenant_cannot_initiate_for_a_provider_it_does_not_own(
    api: ApiHarness, oauth_provider: ProviderConfig
) -> None:
    reply = api.call(
        "POST",
        "/api/email/oauth/imap/initiate",
        tenant=str(uuid.uuid4()),
        json_body={"providerId": oauth_provider.id},
    )
    assert reply.status == 404


def test_redirect_uri_not_on_the_allow_list_is_rejected(
    api: ApiHarness, oauth_provider: ProviderConfig
) -> None:
    reply = api.call(
        "POST",
        "/api/email/oauth/imap/initiate",
        tenant=oauth_provider.tenant,
        json_body={"providerId": oauth_provider.id, "redirectUri": "https://evil.example.com/cb"},
    )
    assert reply.status == 422
    assert [f["field"] for f in reply.json()["fields"]] == ["redirectUri"]
    allowed = api.call(
        "POST",
        "/api/email/oauth/imap/initiate",
        tenant=oauth_provider.tenant,
        json_body={"providerId": oauth_provider.id, "redirectUri": "https://ui.example.com/other"},
    )
    assert allowed.status == 200
    assert parse_qs(urlsplit(allowed.json()["authUrl"]).query)["redirect_uri"] == [
        "https://ui.example.com/other"
    ]


def test_initiate_needs_a_token(api: ApiHarness, oauth_provider: ProviderConfig) -> None:
    reply = api.call(
        "POST", "/api/email/oauth/imap/initiate", json_body={"providerId": oauth_provider.id}
    )
    assert reply.status == 401


def test_nothing_secret_in_responses_or_the_database_columns(
    api: ApiHarness,
    oauth_provider: ProviderConfig,
    oauth_server: OAuthTestServer,
    database_url: str,
) -> None:
    reply = connect_through_api(api, oauth_provider.tenant, oauth_provider.id)
    assert reply.status_code == 302
    tokens = [t.encode() for t in oauth_server.live_refresh_tokens()]
    assert tokens
    for body in api.bodies:
        assert not any(token in body for token in tokens)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        dump = str(connection.execute(text("SELECT * FROM imap_email_provider_config")).fetchall())
        dump += str(connection.execute(text("SELECT * FROM email_providers")).fetchall())
    engine.dispose()
    assert not any(token.decode() in dump for token in tokens)
    assert oauth_server.client_secret not in dump


def test_the_api_tests_an_oauth_provider_with_its_access_token(
    worker: InProcessWorker,
    api: ApiHarness,
    oauth_provider: ProviderConfig,
    oauth_server: OAuthTestServer,
) -> None:
    tenant, path = oauth_provider.tenant, f"/api/v1/providers/{oauth_provider.id}/test"
    not_connected = api.call("POST", path, tenant=tenant)
    assert not_connected.status == 409 and not_connected.json()["error"] == "reauth_required"
    grant_expired(worker, oauth_provider, oauth_server)  # the API refreshes it first
    worker.parts.providers.save_status(oauth_provider, status="connected", error=None)
    calls_before = oauth_server.log.refresh_calls
    tested = api.call("POST", path, tenant=tenant)
    assert tested.status == 200 and tested.json()["ok"] is True, tested
    assert oauth_server.log.refresh_calls - calls_before == 1
