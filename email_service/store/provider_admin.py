"""Provider management: create, change, set a secret, pause, resync, remove (shell).

The one code path the API, the CLI (``provider add``, ``add-oauth``, ``set-password``,
``remove``), the demo and the tests use to manage providers. Each call is one
transaction: the provider rows and every secret given are written together, after every
value was validated, so a failed secret write leaves no provider without its
password and a failed row change leaves the old password in place.

Creating also holds the tenant to ``EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT``: the count and
the insert happen under a per-tenant lock (a PostgreSQL advisory lock held until the
transaction ends; SQLite serialises every writer anyway), so two concurrent creates cannot
both take the last place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection, Engine

from email_service.errors import ProviderLimitReached
from email_service.model import NewProvider, ProviderChanges, provider_secret_names
from email_service.security.secretbox import SecretBox
from email_service.settings import Settings
from email_service.store.engine import transaction
from email_service.store.providers import ProviderStore
from email_service.store.secrets import SecretStore
from email_service.store.tenant_locks import PROVIDER_CAP, lock_tenants

#: Index of each secret in ``provider_secret_names``.
_PASSWORD, _CLIENT_SECRET = 0, 1


@dataclass(frozen=True)
class ProviderSecrets:
    """Secrets to store with a provider; None leaves a stored one as it is."""

    password: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)


class _Parts(Protocol):
    """What ``ProviderAdmin.of`` takes: the API's or the worker's parts."""

    @property
    def engine(self) -> Engine: ...
    @property
    def providers(self) -> ProviderStore: ...
    @property
    def secrets(self) -> SecretStore: ...
    @property
    def settings(self) -> Settings: ...


class ProviderAdmin:
    """Writes providers and their secrets in one transaction each."""

    @classmethod
    def over(
        cls, engine: Engine, box: SecretBox, *, max_providers_per_tenant: int
    ) -> ProviderAdmin:
        """The admin over stores of its own on ``engine``, its secrets sealed by ``box``."""
        return cls(
            engine,
            ProviderStore(engine),
            SecretStore(engine, box),
            max_providers_per_tenant=max_providers_per_tenant,
        )

    @classmethod
    def of(cls, parts: _Parts) -> ProviderAdmin:
        """The admin over ``parts``' engine and stores, capped by its settings."""
        return cls(
            parts.engine,
            parts.providers,
            parts.secrets,
            max_providers_per_tenant=parts.settings.store.max_providers_per_tenant,
        )

    def __init__(
        self,
        engine: Engine,
        providers: ProviderStore,
        secrets: SecretStore,
        *,
        max_providers_per_tenant: int,
    ) -> None:
        self._engine = engine
        self._providers = providers
        self._secrets = secrets
        self.max_providers_per_tenant = max_providers_per_tenant

    def create(self, new: NewProvider, secrets: ProviderSecrets) -> str:
        """Create the provider with ``secrets``; ``ProviderLimitReached`` at the tenant cap."""
        with transaction(self._engine) as connection:
            lock_tenants(connection, PROVIDER_CAP, [new.tenant])
            held = self._providers.count_providers(connection, new.tenant)
            if held >= self.max_providers_per_tenant:
                raise ProviderLimitReached(
                    f"this tenant has {held} providers, the most "
                    f"EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT ({self.max_providers_per_tenant}) "
                    "allows; remove one first, or ask the operator to raise the limit"
                )
            provider_id = self._providers.insert_provider(connection, new)
            self._save_secrets(connection, new.tenant, provider_id, secrets)
        return provider_id

    def change(
        self,
        provider_id: str,
        tenant: str,
        changes: ProviderChanges,
        secrets: ProviderSecrets,
    ) -> None:
        """Apply ``changes`` and store ``secrets``; ``ProviderNotFound`` changes nothing.

        Even an empty change marks the provider changed (its connections restart), which is
        what a new password needs.
        """
        with transaction(self._engine) as connection:
            self._providers.update_in(connection, provider_id, tenant, changes)
            self._save_secrets(connection, tenant, provider_id, secrets)

    def _save_secrets(
        self, connection: Connection, tenant: str, provider_id: str, secrets: ProviderSecrets
    ) -> None:
        names = provider_secret_names(provider_id)
        if secrets.password is not None:
            self._secrets.save_in(connection, tenant, names[_PASSWORD], secrets.password)
        if secrets.client_secret is not None:
            self._secrets.save_in(connection, tenant, names[_CLIENT_SECRET], secrets.client_secret)

    def set_secrets(self, provider_id: str, tenant: str, secrets: ProviderSecrets) -> None:
        """Store ``secrets`` and restart the provider's connections (``change`` of nothing)."""
        self.change(provider_id, tenant, ProviderChanges(), secrets)

    def set_paused(self, provider_id: str, tenant: str, *, paused: bool) -> None:
        """Pause or resume the provider; ``ProviderNotFound`` for another tenant's."""
        self._providers.set_paused(provider_id, tenant, paused)

    def resync(self, provider_id: str, tenant: str, folders: Sequence[str] | None = None) -> None:
        """Forget the cursors of ``folders`` (all when None); its listeners re-baseline."""
        self._providers.reset_cursors(provider_id, tenant, folders)

    def remove(self, provider_id: str, tenant: str) -> None:
        """Delete the provider, its configuration, folder state and every secret of it."""
        self._providers.remove_provider(provider_id, tenant)
