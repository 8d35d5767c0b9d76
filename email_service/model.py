"""Domain types shared by the stores, the listener and the CLI (core)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Security(enum.StrEnum):
    """How the IMAP connection is protected."""

    TLS = "tls"  #: implicit TLS (port 993)
    STARTTLS = "starttls"  #: plain connect, then STARTTLS is required before login
    NONE = "none"  #: plaintext; only when configured so

    @classmethod
    def from_columns(cls, secure: bool, allow_starttls: bool) -> Security:
        if secure:
            return cls.TLS
        return cls.STARTTLS if allow_starttls else cls.NONE

    def to_columns(self) -> tuple[bool, bool]:
        """The ``(secure, allow_starttls)`` columns of ``imap_email_provider_config``."""
        return self is Security.TLS, self is Security.STARTTLS


#: Folder monitored when ``folder_filters`` is empty (DESIGN.md section 4).
DEFAULT_FOLDERS = ("INBOX",)
#: ``email_providers.status`` of a provider whose OAuth grant was revoked: its listeners
#: park until someone connects it again through the OAuth flow.
REAUTH_REQUIRED = "reauth_required"
#: ``imap_email_provider_config.auth_type`` values.
AUTH_PASSWORD = "password"  # noqa: S105 - the auth_type value, not a password
AUTH_OAUTH2 = "oauth2"


#: Prefixes of the secret store names of one provider: ``<prefix><provider id>``.
PROVIDER_SECRET_PREFIXES = (
    "imap_password_",
    "imap_oauth_client_secret_",
    "imap_refresh_token_",
    "imap_access_token_",
)


#: The prefix of a provider's IMAP password secret (``PROVIDER_SECRET_PREFIXES[0]``).
PASSWORD_SECRET_PREFIX = PROVIDER_SECRET_PREFIXES[0]


def provider_secret_names(provider_id: str) -> tuple[str, ...]:
    """Every secret name a provider may have (exact names: ids may hold ``%`` or ``_``).

    In the order of ``PROVIDER_SECRET_PREFIXES``: password, OAuth client secret, refresh
    token, access token. The one place secret names are built.
    """
    return tuple(prefix + provider_id for prefix in PROVIDER_SECRET_PREFIXES)


def password_secret_name(provider_id: str) -> str:
    """The secret name of the provider's IMAP password."""
    return provider_secret_names(provider_id)[0]


@dataclass(frozen=True)
class OAuthFields:
    """The OAuth columns of a provider (``None``: the preset's or the settings' value)."""

    authorize_url: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImapEndpoint:
    """Where and how to connect."""

    host: str
    port: int
    security: Security
    tls_ca_file: str | None = None
    timeout_ms: int | None = None
    socket_keepalive: bool | None = None


@dataclass(frozen=True)
class ProviderConfig:
    """One mailbox provider with its IMAP configuration, as the worker needs it."""

    id: str
    tenant: str
    provider_type: str
    name: str
    mailbox: str
    is_active: bool
    status: str
    endpoint: ImapEndpoint
    auth_type: str
    username: str
    folders: tuple[str, ...]
    lease_fence: int
    updated_at: datetime
    is_paused: bool = False
    #: Connections this account may hold at once; None means the setting's default.
    max_connections: int | None = None
    oauth: OAuthFields = field(default_factory=OAuthFields)

    def password_secret_name(self) -> str:
        return password_secret_name(self.id)

    def client_secret_name(self) -> str:
        return provider_secret_names(self.id)[1]

    def refresh_token_secret_name(self) -> str:
        return provider_secret_names(self.id)[2]

    def access_token_secret_name(self) -> str:
        return provider_secret_names(self.id)[3]


@dataclass(frozen=True)
class NewProvider:
    """What ``provider add`` (and later the API) supplies to create a provider."""

    tenant: str
    name: str
    mailbox: str
    endpoint: ImapEndpoint
    username: str
    folders: tuple[str, ...] = DEFAULT_FOLDERS
    provider_type: str = "imap"
    auth_type: str = AUTH_PASSWORD
    max_connections: int | None = None
    is_active: bool = True
    oauth: OAuthFields = field(default_factory=OAuthFields)


class Keep(enum.Enum):
    """Marks a field of ``ProviderChanges`` that the change leaves as it is."""

    KEEP = "keep"


#: The value of every ``ProviderChanges`` field that is not being changed.
KEEP = Keep.KEEP


@dataclass(frozen=True)
class ProviderChanges:
    """A partial update of a provider (the API's PATCH); ``KEEP`` fields stay as they are.

    ``max_connections=None`` sets the budget back to the default of the setting.
    """

    name: str | Keep = KEEP
    mailbox: str | Keep = KEEP
    host: str | Keep = KEEP
    port: int | Keep = KEEP
    security: Security | Keep = KEEP
    username: str | Keep = KEEP
    folders: tuple[str, ...] | Keep = KEEP
    max_connections: int | Keep | None = KEEP
    is_active: bool | Keep = KEEP


@dataclass(frozen=True)
class PageKey:
    """Where a page of providers ends: the last one's creation time and id."""

    created_at: datetime
    provider_id: str


@dataclass(frozen=True)
class FolderCursor:
    """Where a folder's publishing stands: every UID up to ``last_uid`` is on the stream."""

    uid_validity: int
    last_uid: int


@dataclass(frozen=True)
class FolderKey:
    """Identifies one monitored folder."""

    tenant: str
    provider_id: str
    folder: str
