"""Fixtures and helpers of the OAuth2 tests: a real authorization server (tests/oauth_server.py),
Dovecot checking every XOAUTH2/OAUTHBEARER login against its introspection endpoint, the real
API and in-process workers. ``tests/integration/conftest.py`` makes the fixtures available.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from email_service.devserver.dovecot import DovecotServer, start_dovecot
from email_service.model import (
    AUTH_OAUTH2,
    ImapEndpoint,
    NewProvider,
    OAuthFields,
    ProviderConfig,
    Security,
)
from email_service.settings import Settings
from email_service.store.oauth_grants import OAuthGrantStore, StoredTokens
from email_service.store.provider_admin import ProviderAdmin, ProviderSecrets
from tests.helpers import unique
from tests.integration.api_harness import ApiHarness, api_environ
from tests.integration.service import InProcessWorker
from tests.oauth_server import OAuthTestServer, ServerLog

STATE_SECRET = "state-secret-for-the-oauth-tests-0123456789"
REDIRECT_URI = "https://ui.example.com/oauth/done"
UI_URL = "https://ui.example.com/mailboxes"
INITIATE = "/api/email/oauth/imap/initiate"
CALLBACK = "/api/email/oauth/imap/callback"


@pytest.fixture(scope="session")
def oauth_server_instance() -> Iterator[OAuthTestServer]:
    server = OAuthTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def oauth_server(oauth_server_instance: OAuthTestServer) -> OAuthTestServer:
    """The session's authorization server, with every fault knob back at normal."""
    server = oauth_server_instance
    server.access_ttl_s = 3600
    server.fail_token_status = None
    server.token_latency_s = 0.0
    server.token_stall_s = 0.0
    server.token_reply = None
    server.token_redirect = False
    server.log = ServerLog()
    return server


@pytest.fixture(scope="session")
def oauth_dovecot(
    tmp_path_factory: pytest.TempPathFactory, oauth_server_instance: OAuthTestServer
) -> Iterator[DovecotServer]:
    server = start_dovecot(
        tmp_path_factory.mktemp("dovecot-oauth"),
        oauth2_introspection_url=oauth_server_instance.introspection_url,
    )
    yield server
    server.stop()


@pytest.fixture
def mailbox(oauth_dovecot: DovecotServer, oauth_server: OAuthTestServer) -> str:
    """A Dovecot user that the authorization server consents for."""
    name = unique("oauser")
    oauth_dovecot.add_user(name, unique("unused-password"))
    oauth_server.consenting_user = name
    return name


@pytest.fixture
def oauth_environ(environ: dict[str, str]) -> dict[str, str]:
    return api_environ(
        environ,
        EMAIL_SERVICE_OAUTH_STATE_SECRET=STATE_SECRET,
        EMAIL_SERVICE_OAUTH_REDIRECT_URIS=REDIRECT_URI + ",https://ui.example.com/other",
        EMAIL_SERVICE_OAUTH_UI_URL=UI_URL,
        IMAP_RECONNECT_BASE_MS="200",
        IMAP_RECONNECT_MAX_MS="1500",
    )


def oauth_settings(environ: dict[str, str], **extra: str) -> Settings:
    return Settings.from_env({**environ, **extra}, default_worker_id=unique("worker"))


@pytest.fixture
def make_worker(oauth_environ: dict[str, str]) -> Iterator[Callable[..., InProcessWorker]]:
    """In-process workers with extra settings; all closed at the end of the test."""
    made: list[InProcessWorker] = []

    def make(**extra: str) -> InProcessWorker:
        made.append(InProcessWorker(oauth_settings(oauth_environ, **extra)))
        return made[-1]

    yield make
    for worker in made:
        worker.close()


@pytest.fixture
def oauth_api(oauth_environ: dict[str, str]) -> Iterator[ApiHarness]:
    harness = ApiHarness(oauth_settings(oauth_environ))
    yield harness
    harness.close()


@pytest.fixture
def oauth_provider(
    worker: InProcessWorker,
    oauth_dovecot: DovecotServer,
    oauth_server: OAuthTestServer,
    mailbox: str,
    tenant: str,
) -> ProviderConfig:
    return add_oauth_provider(worker, tenant, oauth_dovecot, oauth_server, mailbox)


def add_oauth_provider(
    worker: InProcessWorker,
    tenant: str,
    dovecot: DovecotServer,
    server: OAuthTestServer,
    username: str,
) -> ProviderConfig:
    parts = worker.parts
    provider_id = ProviderAdmin.of(parts).create(
        NewProvider(
            tenant=tenant,
            name="Support (OAuth)",
            mailbox=f"{username}@localhost",
            endpoint=ImapEndpoint(
                "localhost", dovecot.imaps_port, Security.TLS, tls_ca_file=str(dovecot.ca_file)
            ),
            username=username,
            auth_type=AUTH_OAUTH2,
            oauth=OAuthFields(
                authorize_url=server.authorize_url,
                token_url=server.token_url,
                client_id=server.client_id,
                scopes=("mail",),
            ),
        ),
        ProviderSecrets(client_secret=server.client_secret),
    )
    return parts.providers.find_provider(provider_id, tenant)


def grant_expired(
    worker: InProcessWorker, provider: ProviderConfig, server: OAuthTestServer
) -> tuple[str, str]:
    """Store a grant whose access token expired five minutes ago; return (access, refresh)."""
    access, refresh = server.issue_grant()
    past = datetime.now(UTC) - timedelta(minutes=5)
    OAuthGrantStore(worker.parts.engine, worker.parts.secrets).save_connected_grant(
        provider.tenant, provider.id, StoredTokens(access, refresh, past, past)
    )
    return access, refresh


def grant_directly(
    worker: InProcessWorker, provider: ProviderConfig, server: OAuthTestServer
) -> None:
    """Store a grant as the callback would (for tests about what happens after connecting)."""
    access, refresh = server.issue_grant()
    now = datetime.now(UTC)
    OAuthGrantStore(worker.parts.engine, worker.parts.secrets).save_connected_grant(
        provider.tenant,
        provider.id,
        StoredTokens(access, refresh, now + timedelta(seconds=server.access_ttl_s), now),
    )


def initiate(api: ApiHarness, tenant: str, provider_id: str) -> dict[str, str]:
    reply = api.call("POST", INITIATE, tenant=tenant, json_body={"providerId": provider_id})
    assert reply.status == 200, reply
    result: dict[str, str] = reply.json()
    return result


def code_for(started: dict[str, str]) -> str:
    """Consent at the test authorization server; the code it sends back."""
    consent = requests.get(started["authUrl"], allow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    back = urlsplit(consent.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT_URI
    return parse_qs(back.query)["code"][0]


def callback(
    api: ApiHarness, code: str, state: str, *, tenant: str | None = None
) -> tuple[int, str]:
    """The callback as the UI forwards it (with ``tenant``'s token); (status, error code)."""
    query = urlencode({"code": code, "state": state})
    reply = api.call("GET", f"{CALLBACK}?{query}", tenant=tenant)
    body = reply.json() if reply.status >= 400 else {}
    return reply.status, str(body.get("error", ""))


def connect_through_api(api: ApiHarness, tenant: str, provider_id: str) -> requests.Response:
    """initiate → the authorization server (consents at once) → our callback, forwarded by
    the UI with the token of the user who started the flow."""
    started = initiate(api, tenant, provider_id)
    query = urlencode({"code": code_for(started), "state": started["state"]})
    return requests.get(
        f"{api.base_url}{CALLBACK}?{query}",
        headers={"Authorization": f"Bearer {api.token(tenant)}"},
        allow_redirects=False,
        timeout=30,
    )
