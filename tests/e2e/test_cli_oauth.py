"""``email-service provider add-oauth``: presets fill in what the tenant does not give."""

from __future__ import annotations

from email_service.model import AUTH_OAUTH2
from email_service.security.secretbox import SecretBox
from email_service.settings import Settings
from email_service.store.engine import make_engine
from email_service.store.providers import ProviderStore
from email_service.store.secrets import SecretStore
from tests.e2e.processes import cli


def test_a_gmail_mailbox_gets_the_preset_host_and_its_client_secret_is_encrypted(
    environ: dict[str, str], tenant: str
) -> None:
    env = {**environ, "CLIENT_SECRET": "the-client-secret"}
    added = cli(
        "provider", "add-oauth", "--tenant", tenant, "--name", "Gmail", "--mailbox",
        "support@example.com", "--type", "google", "--client-id", "cid",
        "--client-secret-env", "CLIENT_SECRET", env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    provider_id = added.stdout.strip()
    assert "/api/email/oauth/imap/initiate" in added.stderr
    settings = Settings.from_env(environ)
    engine = make_engine(settings.store.database_url)
    try:
        provider = ProviderStore(engine).find_provider(provider_id, tenant)
        secrets = SecretStore(engine, SecretBox(settings.require_secret_keys()))
        secret = secrets.load_secret(tenant, provider.client_secret_name())
    finally:
        engine.dispose()
    assert (provider.endpoint.host, provider.endpoint.port) == ("imap.gmail.com", 993)
    assert provider.auth_type == AUTH_OAUTH2 and provider.provider_type == "google"
    assert provider.oauth.client_id == "cid" and provider.username == "support@example.com"
    assert secret == "the-client-secret"


def test_a_generic_server_needs_its_oauth_endpoints(environ: dict[str, str], tenant: str) -> None:
    result = cli(
        "provider", "add-oauth", "--tenant", tenant, "--name", "Other", "--mailbox", "a@b.c",
        "--type", "imap", "--host", "imap.example.com", env=environ,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--authorize-url, --token-url and --client-id" in result.stderr
