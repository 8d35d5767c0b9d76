"""Which OAuth client a provider uses: its own columns, else its preset and the settings (core).

The operator's app credentials (``EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID`` / ``_SECRET`` and the
Microsoft pair) go only to the preset's own endpoints. A provider that names an endpoint of
its own (``oauth_authorize_url`` or ``oauth_token_url`` other than the preset's) must carry
its own client id, and, for google and microsoft, its own client secret: otherwise a tenant
could have the service send the operator's secret to a server of the tenant's choosing.
A provider's own client id always goes with its own secret (or none), never the app's.

It lives here, not in ``oauth/``, because it combines our own types (the provider row of
``model``, the operator's ``Settings``) into the plain ``oauth.client.OAuthClientConfig``;
``oauth/`` takes only that config and never sees a row or the settings.
"""

from __future__ import annotations

from email_service.errors import PermanentError
from email_service.model import ProviderConfig
from email_service.oauth.client import OAuthClientConfig
from email_service.settings import OAuthSettings
from providers.presets import APP_CREDENTIAL_TYPES, ProviderPreset, preset_for


def _app_credentials(provider_type: str, oauth: OAuthSettings) -> tuple[str | None, str | None]:
    """The operator's app (client id, secret) for a preset, from settings."""
    if provider_type == "google":
        return oauth.google_client_id, oauth.google_client_secret
    if provider_type == "microsoft":
        return oauth.microsoft_client_id, oauth.microsoft_client_secret
    return None, None


def own_endpoints(provider: ProviderConfig, preset: ProviderPreset, tenant: str) -> list[str]:
    """The provider's endpoint columns that name something other than its preset's."""
    preset_authorize = preset.authorization_endpoint(tenant) if preset.authorize_url else None
    preset_token = preset.token_endpoint(tenant) if preset.token_url else None
    return [
        name
        for name, value, preset_value in (
            ("oauth_authorize_url", provider.oauth.authorize_url, preset_authorize),
            ("oauth_token_url", provider.oauth.token_url, preset_token),
        )
        if value and value != preset_value
    ]


def client_config(
    provider: ProviderConfig,
    oauth: OAuthSettings,
    stored_client_secret: str | None,
    *,
    allow_private_hosts: bool,
) -> OAuthClientConfig:
    """The provider's OAuth client; ``PermanentError`` names what is missing.
    ``allow_private_hosts`` (``IMAP_ALLOW_PRIVATE_HOSTS``) goes with it to the token calls."""
    preset = preset_for(provider.provider_type)
    fields = provider.oauth
    tenant = oauth.microsoft_tenant
    authorize_url = fields.authorize_url or (
        preset.authorization_endpoint(tenant) if preset.authorize_url else None
    )
    token_url = fields.token_url or (preset.token_endpoint(tenant) if preset.token_url else None)
    own = own_endpoints(provider, preset, tenant)
    if (
        own
        and provider.provider_type in APP_CREDENTIAL_TYPES
        and not (fields.client_id and stored_client_secret)
    ):
        raise PermanentError(
            f"provider {provider.id} has its own {' and '.join(own)}: it needs its own "
            "oauth_client_id and client secret (the operator's app credentials go only to "
            f"{provider.provider_type}'s own endpoints)"
        )
    app_id, app_secret = _app_credentials(provider.provider_type, oauth)
    client_id = fields.client_id or (None if own else app_id)
    missing = [
        name
        for name, value in (
            ("oauth_authorize_url", authorize_url),
            ("oauth_token_url", token_url),
            ("oauth_client_id", client_id),
        )
        if not value
    ]
    if missing or authorize_url is None or token_url is None or client_id is None:
        hint = ""
        if provider.provider_type in APP_CREDENTIAL_TYPES and not own:
            hint = (
                f" (or set EMAIL_SERVICE_OAUTH_{provider.provider_type.upper()}_CLIENT_ID "
                "and _CLIENT_SECRET)"
            )
        raise PermanentError(
            f"provider {provider.id} uses OAuth2 but has no {', '.join(missing)}: set it on "
            f"the provider{hint}"
        )
    # A provider's own client id goes with its own secret; the app's id with the app's.
    client_secret = stored_client_secret if fields.client_id else app_secret
    return OAuthClientConfig(
        authorize_url=authorize_url,
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        scopes=fields.scopes or preset.scopes,
        authorize_params=dict(preset.authorize_params),
        allow_private_hosts=allow_private_hosts,
    )
