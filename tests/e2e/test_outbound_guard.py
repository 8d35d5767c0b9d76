"""The server-side request forgery guard at every use, in real ``api`` and ``worker``
processes whose name lookups the test controls.

Each process reads a hosts file of the test's through Debian's ``libnss-wrapper``
(``LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_HOSTS=FILE``, read again when it changes), so a
name can resolve to a public address while the API checks it at create time and to
127.0.0.1 when it is used: the IMAP connection of the worker, the code exchange of the
API's callback, the token refresh of the worker. Private hosts are not allowed; every
server behind those names sits behind a counting proxy, which must see no connection.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from email_service.api.auth import sign_token
from email_service.devserver.dovecot import DovecotServer
from email_service.model import ImapEndpoint, NewProvider, Security
from email_service.security.secretbox import SecretBox
from email_service.settings import Settings
from email_service.store.engine import make_engine
from email_service.store.oauth_grants import OAuthGrantStore, StoredTokens
from email_service.store.provider_admin import ProviderAdmin, ProviderSecrets
from email_service.store.providers import ProviderStore
from email_service.store.secrets import SecretStore
from tests.conftest import MailUser
from tests.e2e.processes import JWT_SECRET, ApiProcess, WorkerProcess
from tests.helpers import wait_for
from tests.oauth_server import OAuthTestServer
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

#: Where Debian's libnss-wrapper puts its library (amd64, arm64).
NSS_WRAPPER_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
    "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
)
#: A public address (example.com's): what the names resolve to at create time.
PUBLIC = "93.184.216.34"
MAIL_NAME = "mail.tenant-owned.test"
TOKEN_NAME = "login.tenant-owned.test"
REDIRECT_URI = "https://ui.example.com/oauth/done"


class HostsFile:
    """The name lookups of the processes started with ``env``."""

    def __init__(self, path: Path) -> None:
        library = next((p for p in NSS_WRAPPER_PATHS if os.path.exists(p)), None)
        if library is None:
            pytest.fail("libnss-wrapper is needed: apt-get install libnss-wrapper")
        self.path = path
        self.env = {"LD_PRELOAD": library, "NSS_WRAPPER_HOSTS": str(path)}

    def point(self, address: str, *names: str) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text("".join(f"{address} {name}\n" for name in names))
        os.replace(temporary, self.path)


def test_names_that_moved_to_loopback_after_the_check_are_refused_at_every_use(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    tmp_path: Path,
    processes: list[ApiProcess | WorkerProcess],
) -> None:
    hosts = HostsFile(tmp_path / "hosts")
    hosts.point(PUBLIC, MAIL_NAME, TOKEN_NAME)
    env = {
        **environ,
        **hosts.env,
        "IMAP_ALLOW_PRIVATE_HOSTS": "false",
        "EMAIL_SERVICE_API_JWT_SECRET": JWT_SECRET,
        "EMAIL_SERVICE_OAUTH_STATE_SECRET": "state-secret-for-the-e2e-tests-0123456789",
        "EMAIL_SERVICE_OAUTH_REDIRECT_URIS": REDIRECT_URI,
    }
    settings = Settings.from_env(env)
    token = sign_token(settings, tenant, subject="admin")
    oauth_server = OAuthTestServer().start()
    imap_proxy = TcpProxy.start("127.0.0.1", dovecot.imap_port)
    token_proxy = TcpProxy.start("127.0.0.1", oauth_server.port)
    engine = make_engine(settings.store.database_url)
    try:
        api = ApiProcess(env, tmp_path / "api.log")
        processes.append(api)
        wait_for(lambda: api.request("GET", "/ready")[0] == 200, timeout_s=30, what="api ready")
        common = {"mailbox": "support@example.com", "username": mail_user.name}
        status, by_name = api.request(
            "POST",
            "/api/v1/providers",
            token,
            {
                **common,
                "name": "by name",
                "host": MAIL_NAME,
                "port": imap_proxy.port,
                "security": "none",
                "password": mail_user.password,
            },
        )
        assert status == 201, by_name
        status, oauth = api.request(
            "POST",
            "/api/v1/providers",
            token,
            {
                **common,
                "name": "token endpoint by name",
                "host": MAIL_NAME,
                "port": imap_proxy.port,
                "security": "none",
                "authType": "oauth2",
                "oauthClientId": oauth_server.client_id,
                "oauthClientSecret": oauth_server.client_secret,
                "oauthAuthorizeUrl": f"https://{TOKEN_NAME}/authorize",
                "oauthTokenUrl": f"https://{TOKEN_NAME}:{token_proxy.port}/token",
            },
        )
        assert status == 201, oauth

        hosts.point("127.0.0.1", MAIL_NAME, TOKEN_NAME)  # the tenant's DNS changes

        status, started = api.request(
            "POST", "/api/email/oauth/imap/initiate", token, {"providerId": oauth["id"]}
        )
        assert status == 200, started
        query = urlencode({"code": "any", "state": started["state"]})
        status, refused = api.request("GET", f"/api/email/oauth/imap/callback?{query}", token)
        assert 400 <= status < 500, (status, refused)
        assert "loopback" in refused["message"] and "127.0.0.1" not in refused["message"]

        # A row the product wrote straight into the tables, and a grant due for refresh.
        providers, box = ProviderStore(engine), SecretBox(settings.require_secret_keys())
        secrets = SecretStore(engine, box)
        direct = ProviderAdmin.over(engine, box, max_providers_per_tenant=100).create(
            NewProvider(
                tenant=tenant,
                name="written directly",
                mailbox="support@example.com",
                endpoint=ImapEndpoint("127.0.0.1", imap_proxy.port, Security.NONE),
                username=mail_user.name,
            ),
            ProviderSecrets(password=mail_user.password),
        )
        access, refresh = oauth_server.issue_grant()
        past = datetime.now(UTC) - timedelta(minutes=5)
        OAuthGrantStore(engine, secrets).save_connected_grant(
            tenant, oauth["id"], StoredTokens(access, refresh, past, past)
        )

        processes.append(WorkerProcess(env, tmp_path / "worker.log"))
        ids = (by_name["id"], oauth["id"], direct)

        def settled() -> list[str] | None:
            if imap_proxy.connections_total or token_proxy.connections_total:
                return ["a connection went through"]
            errors = [providers.load_record(i, tenant).error_message or "" for i in ids]
            return errors if all(errors) else None

        errors = wait_for(settled, timeout_s=30, what="the worker's verdict on every provider")
        assert all("loopback" in error for error in errors), errors
        assert not any("127.0.0.1" in error for error in errors[:2]), errors  # not told
        assert imap_proxy.connections_total == 0
        assert token_proxy.connections_total == 0
        assert oauth_server.log.refresh_calls == 0 and oauth_server.log.code_exchanges == 0
    finally:
        engine.dispose()
        imap_proxy.close()
        token_proxy.close()
        oauth_server.stop()
