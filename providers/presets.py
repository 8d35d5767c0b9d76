"""What differs per mailbox provider: IMAP endpoint, OAuth2 endpoints and scopes, limits (core).

``imap`` is any IMAP server: password or OAuth2 with URLs and scopes configured per
provider. ``google`` and ``microsoft`` fill in what their documentation publishes, so a
tenant only supplies the client credentials (or the operator sets them once, see
``EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID`` and friends, which are then used only with these
endpoints).

Limits are what the providers document or are widely reported to enforce, taken
conservatively; the worker uses the smaller of a preset's limit and the operator's setting:

- Gmail: at most 15 simultaneous IMAP connections per account (Google's help pages);
  IDLE is re-issued every 9 minutes, inside the ~10 minutes after which idle Gmail
  sessions are reported to be dropped.
- Microsoft 365 (Exchange Online): at most 20 simultaneous IMAP connections per mailbox;
  IDLE is re-issued every 25 minutes, inside the 30 minutes of RFC 2177 and Exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import quote

#: The Microsoft identity platform's tenant that accepts work, school and personal accounts.
MICROSOFT_COMMON_TENANT = "common"


@dataclass(frozen=True)
class ProviderPreset:
    """Endpoints and limits of one kind of mailbox provider."""

    provider_type: str
    imap_host: str | None
    imap_port: int
    #: OAuth2 authorization and token endpoints; ``{tenant}`` is the Microsoft tenant.
    authorize_url: str | None
    token_url: str | None
    scopes: tuple[str, ...]
    #: Extra query parameters of the authorization request (offline access, consent).
    authorize_params: MappingProxyType[str, str]
    #: Simultaneous connections one account may hold; None means only the setting applies.
    max_connections: int | None
    #: Longest an IDLE command may run before it is re-issued; None: only the setting.
    idle_reissue_ms: int | None

    def authorization_endpoint(self, microsoft_tenant: str = MICROSOFT_COMMON_TENANT) -> str:
        if self.authorize_url is None:
            raise ValueError(f"{self.provider_type}: the authorize URL is set per provider")
        return self.authorize_url.format(tenant=quote(microsoft_tenant, safe=""))

    def token_endpoint(self, microsoft_tenant: str = MICROSOFT_COMMON_TENANT) -> str:
        if self.token_url is None:
            raise ValueError(f"{self.provider_type}: the token URL is configured per provider")
        return self.token_url.format(tenant=quote(microsoft_tenant, safe=""))


GENERIC = ProviderPreset(
    provider_type="imap",
    imap_host=None,
    imap_port=993,
    authorize_url=None,
    token_url=None,
    scopes=(),
    authorize_params=MappingProxyType({}),
    max_connections=None,
    idle_reissue_ms=None,
)

GOOGLE = ProviderPreset(
    provider_type="google",
    imap_host="imap.gmail.com",
    imap_port=993,
    authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
    token_url="https://oauth2.googleapis.com/token",  # noqa: S106 - an endpoint
    scopes=("https://mail.google.com/",),
    # A refresh token is only issued with offline access, and again on a second connect
    # only when consent is asked for.
    authorize_params=MappingProxyType({"access_type": "offline", "prompt": "consent"}),
    max_connections=15,
    idle_reissue_ms=9 * 60 * 1000,
)

MICROSOFT = ProviderPreset(
    provider_type="microsoft",
    imap_host="outlook.office365.com",
    imap_port=993,
    authorize_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
    token_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",  # noqa: S106
    scopes=("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"),
    authorize_params=MappingProxyType({"prompt": "select_account"}),
    max_connections=20,
    idle_reissue_ms=25 * 60 * 1000,
)

PRESETS: MappingProxyType[str, ProviderPreset] = MappingProxyType(
    {preset.provider_type: preset for preset in (GENERIC, GOOGLE, MICROSOFT)}
)
#: ``email_providers.provider_type`` values (DESIGN.md section 4).
PROVIDER_TYPES = tuple(PRESETS)
#: Presets the operator may give app credentials for (``EMAIL_SERVICE_OAUTH_<TYPE>_CLIENT_ID``
#: and ``_SECRET``). Those go only to the preset's own endpoints: a provider of these types
#: with an endpoint of its own brings its own client id and secret
#: (``email_service.credentials.oauth_clients``).
APP_CREDENTIAL_TYPES = frozenset({"google", "microsoft"})


def preset_for(provider_type: str) -> ProviderPreset:
    """The preset of ``provider_type``; an unknown type is treated as generic IMAP."""
    return PRESETS.get(provider_type, GENERIC)


def connection_limit(provider_type: str, configured: int) -> int:
    """Connections per account: the setting, capped by what the provider allows."""
    limit = preset_for(provider_type).max_connections
    return configured if limit is None else min(configured, limit)


def idle_reissue_s(provider_type: str, configured_s: float) -> float:
    """Seconds one IDLE may run: the setting, capped by what the provider tolerates."""
    limit_ms = preset_for(provider_type).idle_reissue_ms
    return configured_s if limit_ms is None else min(configured_s, limit_ms / 1000)
