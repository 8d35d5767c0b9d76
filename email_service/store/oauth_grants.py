"""OAuth grants in the database (shell): token version, refresh claim, tokens in the secret store.

Single-flight refresh across threads and replicas is a compare-and-set on
``oauth_token_version``:

1. ``try_claim`` sets ``oauth_refresh_owner`` / ``oauth_refresh_until`` (database clock)
   only if the version is the one the caller read and no live claim exists. One caller
   wins; the others wait for the version to move and then read the new token.
2. The winner calls the token endpoint, then ``finish_refresh`` stores the access token,
   the rotated refresh token (if any) and the expiry, bumps the version and clears the
   claim, all in one transaction, and only if the version is still the one it claimed.
3. On a revoked grant ``mark_reauth_required`` parks the provider (status
   ``reauth_required``, which ``load_active_providers`` leaves out); on a passing failure
   ``release_claim`` lets the next caller try after its backoff.

A claim whose holder died expires after its hold, so a crashed refresher blocks nobody
for long. The connect callback (``save_connected_grant``) writes a new grant whatever
the version: a person connecting again supersedes everything in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, Engine, and_, or_, select, update

from email_service.errors import ProviderNotFound
from email_service.model import REAUTH_REQUIRED, ProviderConfig
from email_service.store.dbclock import db_now, db_now_plus_ms
from email_service.store.engine import transaction
from email_service.store.providers import MAX_ERROR_CHARS
from email_service.store.schema import email_providers, imap_email_provider_config
from email_service.store.secrets import SecretStore

_providers = email_providers
_config = imap_email_provider_config
#: Column values that end a refresh claim.
_NO_CLAIM = {"oauth_refresh_owner": None, "oauth_refresh_until": None}


@dataclass(frozen=True)
class GrantState:
    """Where a provider's OAuth grant stands."""

    version: int
    expires_at: datetime | None
    refreshed_at: datetime | None
    status: str
    #: Someone holds an unexpired refresh claim (database clock).
    refresh_claimed: bool


@dataclass(frozen=True)
class StoredTokens:
    """A new access token and, when the server rotated it, a new refresh token."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime
    refreshed_at: datetime

    def __repr__(self) -> str:
        return f"StoredTokens(expires_at={self.expires_at!r}, <tokens redacted>)"


def _now() -> datetime:
    return datetime.now(UTC)


class OAuthGrantStore:
    """Reads and moves the OAuth grant of providers; tokens go to the secret store."""

    def __init__(self, engine: Engine, secrets: SecretStore) -> None:
        self._engine = engine
        self._secrets = secrets

    def _where(self, tenant: str, provider_id: str) -> list[ColumnElement[bool]]:
        return [_config.c.email_provider_id == provider_id, _config.c.tenant == tenant]

    def load(self, provider: ProviderConfig) -> GrantState:
        claimed = and_(
            _config.c.oauth_refresh_until.is_not(None), _config.c.oauth_refresh_until > db_now()
        )
        query = (
            select(
                _config.c.oauth_token_version,
                _config.c.token_expires_at,
                _config.c.token_refreshed_at,
                _providers.c.status,
                claimed.label("claimed"),
            )
            .join(
                _providers,
                and_(
                    _providers.c.id == _config.c.email_provider_id,
                    _providers.c.tenant == _config.c.tenant,
                ),
            )
            .where(*self._where(provider.tenant, provider.id))
        )
        with transaction(self._engine) as connection:
            row = connection.execute(query).first()
        if row is None:
            raise ProviderNotFound(f"no provider {provider.id}")
        return GrantState(
            version=int(row.oauth_token_version),
            expires_at=row.token_expires_at,
            refreshed_at=row.token_refreshed_at,
            status=row.status,
            refresh_claimed=bool(row.claimed),
        )

    def load_access_token(self, provider: ProviderConfig) -> str:
        return self._secrets.load_secret(provider.tenant, provider.access_token_secret_name())

    def load_refresh_token(self, provider: ProviderConfig) -> str:
        return self._secrets.load_secret(provider.tenant, provider.refresh_token_secret_name())

    def try_claim(self, provider: ProviderConfig, version: int, owner: str, hold_ms: int) -> bool:
        """Take the refresh claim if the version is ``version`` and nobody holds a live one."""
        with transaction(self._engine) as connection:
            changed = connection.execute(
                update(_config)
                .where(
                    *self._where(provider.tenant, provider.id),
                    _config.c.oauth_token_version == version,
                    or_(
                        _config.c.oauth_refresh_until.is_(None),
                        _config.c.oauth_refresh_until <= db_now(),
                    ),
                )
                .values(oauth_refresh_owner=owner, oauth_refresh_until=db_now_plus_ms(hold_ms))
            ).rowcount
        return bool(changed)

    def finish_refresh(self, provider: ProviderConfig, version: int, tokens: StoredTokens) -> bool:
        """Store the refreshed tokens and bump the version, if it is still ``version``."""
        with transaction(self._engine) as connection:
            changed = connection.execute(
                update(_config)
                .where(
                    *self._where(provider.tenant, provider.id),
                    _config.c.oauth_token_version == version,
                )
                .values(
                    oauth_token_version=version + 1,
                    token_expires_at=tokens.expires_at,
                    token_refreshed_at=tokens.refreshed_at,
                    **_NO_CLAIM,
                )
            ).rowcount
            if not changed:
                return False
            self._save_tokens(connection, provider.tenant, provider.id, tokens)
        return True

    def release_claim(self, provider: ProviderConfig, version: int, owner: str) -> None:
        with transaction(self._engine) as connection:
            connection.execute(
                update(_config)
                .where(
                    *self._where(provider.tenant, provider.id),
                    _config.c.oauth_token_version == version,
                    _config.c.oauth_refresh_owner == owner,
                )
                .values(**_NO_CLAIM)
            )

    def mark_reauth_required(self, provider: ProviderConfig, version: int, message: str) -> None:
        """Park the provider: status ``reauth_required``, unless a new grant arrived meanwhile."""
        with transaction(self._engine) as connection:
            changed = connection.execute(
                update(_config)
                .where(
                    *self._where(provider.tenant, provider.id),
                    _config.c.oauth_token_version == version,
                )
                .values(**_NO_CLAIM, last_error=message[:MAX_ERROR_CHARS])
            ).rowcount
            if changed:
                connection.execute(
                    update(_providers)
                    .where(_providers.c.id == provider.id, _providers.c.tenant == provider.tenant)
                    .values(status=REAUTH_REQUIRED, error_message=message[:MAX_ERROR_CHARS])
                )

    def save_connected_grant(self, tenant: str, provider_id: str, tokens: StoredTokens) -> None:
        """The connect callback's grant: stored whatever the version; the provider resumes."""
        now = _now()
        with transaction(self._engine) as connection:
            changed = connection.execute(
                update(_config)
                .where(*self._where(tenant, provider_id))
                .values(
                    oauth_token_version=_config.c.oauth_token_version + 1,
                    token_expires_at=tokens.expires_at,
                    token_refreshed_at=tokens.refreshed_at,
                    **_NO_CLAIM,
                    last_error=None,
                    updated_at=now,
                )
            ).rowcount
            if not changed:
                raise ProviderNotFound(f"no provider {provider_id}")
            connection.execute(
                update(_providers)
                .where(_providers.c.id == provider_id, _providers.c.tenant == tenant)
                .values(status="connected", error_message=None, updated_at=now)
            )
            self._save_tokens(connection, tenant, provider_id, tokens)

    def _save_tokens(
        self, connection: Connection, tenant: str, provider_id: str, tokens: StoredTokens
    ) -> None:
        self._secrets.save_in(
            connection, tenant, f"imap_access_token_{provider_id}", tokens.access_token
        )
        if tokens.refresh_token is not None:
            self._secrets.save_in(
                connection, tenant, f"imap_refresh_token_{provider_id}", tokens.refresh_token
            )
