"""Credentials for a provider's IMAP login: a password, or an OAuth access token (shell)."""

from __future__ import annotations

from email_service.credentials.tokens import TokenManager
from email_service.errors import PermanentError
from email_service.imap.session import Login, OAuthLogin, PasswordLogin
from email_service.model import AUTH_OAUTH2, AUTH_PASSWORD, ProviderConfig
from email_service.settings import ImapSettings
from email_service.store.secrets import SecretStore


class LoginSource:
    """Builds the login of a provider from the secret store and the token manager."""

    def __init__(self, imap: ImapSettings, secrets: SecretStore, tokens: TokenManager) -> None:
        self._imap = imap
        self._secrets = secrets
        self._tokens = tokens

    def login_for(self, provider: ProviderConfig, *, rejected: str | None = None) -> Login:
        """The login to use now; ``rejected`` is an access token the server just refused."""
        if provider.auth_type == AUTH_OAUTH2:
            token = self._tokens.access_token(provider, rejected=rejected)
            return OAuthLogin(
                username=provider.username,
                access_token=token.value,
                mechanism=self._imap.oauth_auth_mechanism,
                fresh=token.fresh,
                renew_at=token.renew_at,
            )
        if provider.auth_type != AUTH_PASSWORD:
            raise PermanentError(
                f"provider {provider.id} has auth_type {provider.auth_type!r}: expected "
                f"{AUTH_PASSWORD} or {AUTH_OAUTH2}"
            )
        password = self._secrets.load_secret(provider.tenant, provider.password_secret_name())
        return PasswordLogin(provider.username, password)
