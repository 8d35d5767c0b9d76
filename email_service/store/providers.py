"""Providers and their IMAP configuration in the database (shell)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Row, and_, delete, select, update

from email_service.errors import LeaseLost, ProviderNotFound
from email_service.model import DEFAULT_FOLDERS, ImapEndpoint, NewProvider, ProviderConfig, Security
from email_service.store.engine import transaction
from email_service.store.fencing import check_fence
from email_service.store.schema import (
    email_providers,
    email_secrets,
    imap_email_provider_config,
)

#: Longest error text kept on a provider row; the UI shows it, the logs have the rest.
MAX_ERROR_CHARS = 2000

_providers = email_providers
_config = imap_email_provider_config


def _now() -> datetime:
    return datetime.now(UTC)


def _provider_from_row(row: Row[Any]) -> ProviderConfig:
    m = row._mapping
    folders = tuple(m["folder_filters"] or ()) or DEFAULT_FOLDERS
    return ProviderConfig(
        id=m["id"],
        tenant=m["tenant"],
        provider_type=m["provider_type"],
        name=m["provider_name"],
        mailbox=m["mailbox"],
        is_active=m["is_active"],
        status=m["status"],
        endpoint=ImapEndpoint(
            host=m["host"],
            port=m["port"],
            security=Security.from_columns(m["secure"], m["allow_starttls"]),
            tls_ca_file=m["tls_ca_file"],
            timeout_ms=m["connection_timeout_ms"],
            socket_keepalive=m["socket_keepalive"],
        ),
        auth_type=m["auth_type"],
        username=m["username"],
        folders=folders,
        lease_fence=m["lease_fence"],
        updated_at=max(m["updated_at"], m["config_updated_at"]),
        is_paused=m["is_paused"],
        max_connections=m["max_connections"],
    )


def _select_providers() -> Any:
    return select(
        _providers.c.id,
        _providers.c.tenant,
        _providers.c.provider_type,
        _providers.c.provider_name,
        _providers.c.mailbox,
        _providers.c.is_active,
        _providers.c.is_paused,
        _providers.c.status,
        _providers.c.updated_at,
        _config.c.host,
        _config.c.port,
        _config.c.secure,
        _config.c.allow_starttls,
        _config.c.tls_ca_file,
        _config.c.connection_timeout_ms,
        _config.c.socket_keepalive,
        _config.c.auth_type,
        _config.c.username,
        _config.c.folder_filters,
        _config.c.lease_fence,
        _config.c.max_connections,
        _config.c.updated_at.label("config_updated_at"),
    ).join(
        _config,
        and_(
            _config.c.email_provider_id == _providers.c.id, _config.c.tenant == _providers.c.tenant
        ),
    )


class ProviderStore:
    """Reads and writes ``email_providers`` and ``imap_email_provider_config``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add_provider(self, new: NewProvider) -> str:
        """Create the provider and its IMAP configuration; return the new id."""
        provider_id = str(uuid.uuid4())
        now = _now()
        secure, allow_starttls = new.endpoint.security.to_columns()
        with transaction(self._engine) as connection:
            connection.execute(
                _providers.insert().values(
                    id=provider_id,
                    tenant=new.tenant,
                    provider_type=new.provider_type,
                    provider_name=new.name,
                    mailbox=new.mailbox,
                    is_active=True,
                    status="pending",
                    created_at=now,
                    updated_at=now,
                )
            )
            connection.execute(
                _config.insert().values(
                    email_provider_id=provider_id,
                    tenant=new.tenant,
                    host=new.endpoint.host,
                    port=new.endpoint.port,
                    secure=secure,
                    allow_starttls=allow_starttls,
                    auth_type=new.auth_type,
                    username=new.username,
                    folder_filters=list(new.folders),
                    folder_state={},
                    lease_fence=0,
                    tls_ca_file=new.endpoint.tls_ca_file,
                    connection_timeout_ms=new.endpoint.timeout_ms,
                    max_connections=new.max_connections,
                    socket_keepalive=new.endpoint.socket_keepalive,
                    created_at=now,
                    updated_at=now,
                )
            )
        return provider_id

    def list_providers(self, tenant: str | None = None) -> list[ProviderConfig]:
        query = _select_providers().order_by(_providers.c.tenant, _providers.c.created_at)
        if tenant is not None:
            query = query.where(_providers.c.tenant == tenant)
        with transaction(self._engine) as connection:
            return [_provider_from_row(row) for row in connection.execute(query)]

    def load_active_providers(self) -> list[ProviderConfig]:
        query = _select_providers().where(
            _providers.c.is_active.is_(True), _providers.c.is_paused.is_(False)
        )
        with transaction(self._engine) as connection:
            return [_provider_from_row(row) for row in connection.execute(query)]

    def find_provider(self, provider_id: str, tenant: str | None = None) -> ProviderConfig:
        """The provider with this id (within ``tenant`` when given), or ``ProviderNotFound``."""
        query = _select_providers().where(_providers.c.id == provider_id)
        if tenant is not None:
            query = query.where(_providers.c.tenant == tenant)
        with transaction(self._engine) as connection:
            rows = connection.execute(query).fetchall()
        if len(rows) != 1:
            raise ProviderNotFound(f"no provider {provider_id}")
        return _provider_from_row(rows[0])

    def remove_provider(self, provider_id: str, tenant: str) -> None:
        """Delete the provider, its configuration, folder state and secrets."""
        with transaction(self._engine) as connection:
            deleted = connection.execute(
                delete(_providers).where(
                    _providers.c.id == provider_id, _providers.c.tenant == tenant
                )
            ).rowcount
            if deleted == 0:
                raise ProviderNotFound(f"no provider {provider_id}")
            connection.execute(
                delete(email_secrets).where(
                    email_secrets.c.tenant == tenant,
                    email_secrets.c.name.like(f"%\\_{provider_id}", escape="\\"),
                )
            )

    def touch(self, provider: ProviderConfig) -> None:
        """Mark the configuration changed, so running listeners restart with it."""
        with transaction(self._engine) as connection:
            connection.execute(
                update(_config)
                .where(
                    _config.c.email_provider_id == provider.id, _config.c.tenant == provider.tenant
                )
                .values(updated_at=_now())
            )

    def mark_synced(self, provider: ProviderConfig, fence: int) -> None:
        """Set ``last_sync_at`` to now (fenced; status and errors are left alone)."""
        with transaction(self._engine) as connection:
            check_fence(connection, provider.tenant, provider.id, fence)
            connection.execute(
                update(_providers)
                .where(_providers.c.id == provider.id, _providers.c.tenant == provider.tenant)
                .values(last_sync_at=_now())
            )

    def save_status(
        self,
        provider: ProviderConfig,
        *,
        status: str,
        error: str | None,
        fence: int | None = None,
        capabilities: Sequence[str] | None = None,
        synced: bool = False,
    ) -> None:
        """Record the provider's status and last error (checked against ``fence`` if given)."""
        now = _now()
        error_text = error[:MAX_ERROR_CHARS] if error else None
        with transaction(self._engine) as connection:
            config_where = [
                _config.c.email_provider_id == provider.id,
                _config.c.tenant == provider.tenant,
            ]
            if fence is not None:
                config_where.append(_config.c.lease_fence == fence)
            config_values: dict[str, Any] = {"last_error": error_text}
            if capabilities is not None:
                config_values["server_capabilities"] = list(capabilities)
            changed = connection.execute(
                update(_config).where(*config_where).values(**config_values)
            ).rowcount
            if changed == 0:
                raise LeaseLost(f"provider {provider.id}: fencing value {fence} is stale")
            provider_values: dict[str, Any] = {"status": status, "error_message": error_text}
            if synced:
                provider_values["last_sync_at"] = now
            connection.execute(
                update(_providers)
                .where(_providers.c.id == provider.id, _providers.c.tenant == provider.tenant)
                .values(**provider_values)
            )
