"""Providers and their IMAP configuration in the database (shell).

The worker reads providers with ``load_active_providers``; the CLI and the API create,
change and remove them. The API's actions on a running provider are plain, unfenced
writes that the worker's supervisor picks up on its next refresh: ``set_paused`` (a paused
provider drops out of the active list, so its lease is released), ``touch`` (a newer
``updated_at`` restarts its connections) and ``reset_cursors`` (no cursor means the
listener re-baselines to the newest ``IMAP_MAX_EMAILS_PER_SYNC`` messages).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)

from email_service.contract.formats import require_tenant_id
from email_service.errors import LeaseLost, ProviderNotFound
from email_service.model import (
    DEFAULT_FOLDERS,
    KEEP,
    PASSWORD_SECRET_PREFIX,
    REAUTH_REQUIRED,
    FolderKey,
    ImapEndpoint,
    NewProvider,
    OAuthFields,
    PageKey,
    ProviderChanges,
    ProviderConfig,
    Security,
    provider_secret_names,
)
from email_service.store.cursors import _refresh_folder_state_json
from email_service.store.dbclock import db_now
from email_service.store.engine import transaction
from email_service.store.fencing import check_fence
from email_service.store.schema import (
    email_providers,
    email_secrets,
    imap_email_provider_config,
    imap_folder_state,
)

#: Longest error text kept on a provider row; the UI shows it, the logs have the rest.
MAX_ERROR_CHARS = 2000

_providers = email_providers
_config = imap_email_provider_config
_state = imap_folder_state


@dataclass(frozen=True)
class ProviderRecord:
    """A provider as the API shows it: the worker's view plus the bookkeeping columns."""

    config: ProviderConfig
    created_at: datetime
    last_sync_at: datetime | None
    error_message: str | None
    has_password: bool


@dataclass(frozen=True)
class CursorRow:
    """One ``imap_folder_state`` row."""

    folder: str
    uid_validity: int
    last_uid: int
    last_seen_at: datetime | None


@dataclass(frozen=True)
class ProviderStatusRecord:
    """What the database knows about a provider's progress, for the status API."""

    record: ProviderRecord
    lease_owner: str | None
    lease_expires_at: datetime | None
    #: The lease is held and not expired, judged by the database clock.
    lease_live: bool
    last_error: str | None
    capabilities: tuple[str, ...] | None
    cursors: tuple[CursorRow, ...]


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
        oauth=OAuthFields(
            authorize_url=m["oauth_authorize_url"],
            token_url=m["oauth_token_url"],
            client_id=m["oauth_client_id"],
            scopes=tuple((m["oauth_scopes"] or "").split()),
        ),
    )


def _record_from_row(row: Row[Any]) -> ProviderRecord:
    m = row._mapping
    return ProviderRecord(
        config=_provider_from_row(row),
        created_at=m["created_at"],
        last_sync_at=m["last_sync_at"],
        error_message=m["error_message"],
        has_password=bool(m["has_password"]),
    )


def _lock_config_row(connection: Connection, provider_id: str, tenant: str) -> Row[Any, Any] | None:
    """Lock the provider's config row (host and folders), or None if there is none.

    Every transaction that writes both the provider and its config row takes the config
    row first, as ``check_fence`` and ``save_status`` do: one order, no deadlocks.
    """
    return connection.execute(
        select(_config.c.host, _config.c.folder_filters)
        .where(_config.c.email_provider_id == provider_id, _config.c.tenant == tenant)
        .with_for_update()
    ).first()


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
        _config.c.oauth_authorize_url,
        _config.c.oauth_token_url,
        _config.c.oauth_client_id,
        _config.c.oauth_scopes,
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
        """Create the provider and its IMAP configuration; return the new id.

        Without secrets and without the tenant's provider cap: for tests and tools. The
        API, the CLI and the demo create providers with ``ProviderAdmin.create``.
        """
        with transaction(self._engine) as connection:
            return self.insert_provider(connection, new)

    def insert_provider(self, connection: Connection, new: NewProvider) -> str:
        """Insert the provider and its configuration in the caller's transaction.

        Raises ``TenantIdInvalid`` unless the tenant id is a UUID."""
        require_tenant_id(new.tenant)
        provider_id = str(uuid.uuid4())
        now = _now()
        secure, allow_starttls = new.endpoint.security.to_columns()
        connection.execute(
            _providers.insert().values(
                id=provider_id,
                tenant=new.tenant,
                provider_type=new.provider_type,
                provider_name=new.name,
                mailbox=new.mailbox,
                is_active=new.is_active,
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
                oauth_authorize_url=new.oauth.authorize_url,
                oauth_token_url=new.oauth.token_url,
                oauth_client_id=new.oauth.client_id,
                oauth_scopes=" ".join(new.oauth.scopes) or None,
                oauth_token_version=0,
                created_at=now,
                updated_at=now,
            )
        )
        return provider_id

    def count_providers(self, connection: Connection, tenant: str) -> int:
        """How many providers ``tenant`` has, in the caller's transaction."""
        count = connection.execute(
            select(func.count()).select_from(_providers).where(_providers.c.tenant == tenant)
        ).scalar_one()
        return int(count)

    def list_providers(self, tenant: str | None = None) -> list[ProviderConfig]:
        query = _select_providers().order_by(_providers.c.tenant, _providers.c.created_at)
        if tenant is not None:
            query = query.where(_providers.c.tenant == tenant)
        with transaction(self._engine) as connection:
            return [_provider_from_row(row) for row in connection.execute(query)]

    def load_active_providers(self) -> list[ProviderConfig]:
        query = _select_providers().where(
            _providers.c.is_active.is_(True),
            _providers.c.is_paused.is_(False),
            _providers.c.status != REAUTH_REQUIRED,
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
            # The config row first, as the worker's fenced writes lock it (then the
            # provider row): the other order deadlocks against a running worker.
            if _lock_config_row(connection, provider_id, tenant) is None:
                raise ProviderNotFound(f"no provider {provider_id}")
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
                    email_secrets.c.name.in_(provider_secret_names(provider_id)),
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

    # -- for the API: tenant-scoped reads and unfenced changes ------------------------------

    def list_records(
        self,
        tenant: str,
        provider_id: str | None = None,
        *,
        after: PageKey | None = None,
        limit: int | None = None,
    ) -> list[ProviderRecord]:
        """The tenant's providers (or the one with ``provider_id``), oldest first.

        ``after`` and ``limit`` page through them: at most ``limit`` providers that come
        after ``after`` in (``created_at``, ``id``) order, an order no insert can reshuffle.
        """
        has_password = exists().where(
            email_secrets.c.tenant == _providers.c.tenant,
            email_secrets.c.name == literal(PASSWORD_SECRET_PREFIX).concat(_providers.c.id),
        )
        query = (
            _select_providers()
            .add_columns(
                _providers.c.created_at,
                _providers.c.last_sync_at,
                _providers.c.error_message,
                has_password.label("has_password"),
            )
            .where(_providers.c.tenant == tenant)
            .order_by(_providers.c.created_at, _providers.c.id)
        )
        if provider_id is not None:
            query = query.where(_providers.c.id == provider_id)
        if after is not None:
            query = query.where(
                or_(
                    _providers.c.created_at > after.created_at,
                    and_(
                        _providers.c.created_at == after.created_at,
                        _providers.c.id > after.provider_id,
                    ),
                )
            )
        if limit is not None:
            query = query.limit(limit)
        with transaction(self._engine) as connection:
            return [_record_from_row(row) for row in connection.execute(query)]

    def load_record(self, provider_id: str, tenant: str) -> ProviderRecord:
        """The tenant's provider ``provider_id``, or ``ProviderNotFound``."""
        records = self.list_records(tenant, provider_id)
        if not records:
            raise ProviderNotFound(f"no provider {provider_id}")
        return records[0]

    def update_provider(self, provider_id: str, tenant: str, changes: ProviderChanges) -> None:
        """Apply ``changes`` (``update_in``) in a transaction of its own."""
        with transaction(self._engine) as connection:
            self.update_in(connection, provider_id, tenant, changes)

    def update_in(
        self, connection: Connection, provider_id: str, tenant: str, changes: ProviderChanges
    ) -> None:
        """Apply ``changes`` and mark the provider changed, so its connections restart.

        A new host also forgets the server's capabilities and an operator's CA file (both
        belong to the old server); folders dropped from the list lose their cursors, so
        adding one back later starts from the newest mail instead of replaying the gap.
        """
        now = _now()
        provider_values: dict[str, Any] = {"updated_at": now}
        config_values: dict[str, Any] = {"updated_at": now}
        provider_fields: tuple[tuple[str, object], ...] = (
            ("provider_name", changes.name),
            ("mailbox", changes.mailbox),
            ("is_active", changes.is_active),
        )
        config_fields: tuple[tuple[str, object], ...] = (
            ("host", changes.host),
            ("port", changes.port),
            ("username", changes.username),
            ("max_connections", changes.max_connections),
        )
        provider_values.update({c: v for c, v in provider_fields if v is not KEEP})
        config_values.update({c: v for c, v in config_fields if v is not KEEP})
        if changes.security is not KEEP:
            config_values["secure"], config_values["allow_starttls"] = changes.security.to_columns()
        if changes.folders is not KEEP:
            config_values["folder_filters"] = list(changes.folders)
        key = FolderKey(tenant, provider_id, "")
        current = _lock_config_row(connection, provider_id, tenant)
        if current is None:
            raise ProviderNotFound(f"no provider {provider_id}")
        if changes.host is not KEEP and changes.host != current.host:
            config_values["server_capabilities"] = None
            config_values["tls_ca_file"] = None
        connection.execute(
            update(_providers)
            .where(_providers.c.id == provider_id, _providers.c.tenant == tenant)
            .values(**provider_values)
        )
        connection.execute(
            update(_config)
            .where(_config.c.email_provider_id == provider_id, _config.c.tenant == tenant)
            .values(**config_values)
        )
        if changes.folders is not KEEP:
            kept = list(changes.folders or DEFAULT_FOLDERS)
            connection.execute(
                delete(_state).where(
                    _state.c.email_provider_id == provider_id,
                    _state.c.tenant == tenant,
                    _state.c.folder.not_in(kept),
                )
            )
            _refresh_folder_state_json(connection, key)

    def set_paused(self, provider_id: str, tenant: str, paused: bool) -> None:
        """Pause or resume: a paused provider is left out of ``load_active_providers``."""
        with transaction(self._engine) as connection:
            changed = connection.execute(
                update(_providers)
                .where(_providers.c.id == provider_id, _providers.c.tenant == tenant)
                .values(is_paused=paused, updated_at=_now())
            ).rowcount
        if changed == 0:
            raise ProviderNotFound(f"no provider {provider_id}")

    def reset_cursors(
        self, provider_id: str, tenant: str, folders: Sequence[str] | None = None
    ) -> None:
        """Forget the cursors of ``folders`` (all when None) and mark the provider changed.

        The restarted listeners find no cursor and re-baseline to the newest
        ``IMAP_MAX_EMAILS_PER_SYNC`` messages. A listener still running before the restart
        cannot bring an old cursor back: advancing only updates an existing row.
        """
        conditions = [_state.c.email_provider_id == provider_id, _state.c.tenant == tenant]
        if folders is not None:
            conditions.append(_state.c.folder.in_(list(folders)))
        with transaction(self._engine) as connection:
            changed = connection.execute(
                update(_config)
                .where(_config.c.email_provider_id == provider_id, _config.c.tenant == tenant)
                .values(updated_at=_now())
            ).rowcount
            if changed == 0:
                raise ProviderNotFound(f"no provider {provider_id}")
            connection.execute(delete(_state).where(*conditions))
            _refresh_folder_state_json(connection, FolderKey(tenant, provider_id, ""))

    def load_status(self, provider_id: str, tenant: str) -> ProviderStatusRecord:
        """Lease, last error, capabilities and cursors of the tenant's provider."""
        record = self.load_record(provider_id, tenant)
        lease_live = and_(
            _config.c.lease_owner.is_not(None),
            _config.c.lease_expires_at.is_not(None),
            _config.c.lease_expires_at > db_now(),
        )
        with transaction(self._engine) as connection:
            row = connection.execute(
                select(
                    _config.c.lease_owner,
                    _config.c.lease_expires_at,
                    lease_live.label("lease_live"),
                    _config.c.last_error,
                    _config.c.server_capabilities,
                ).where(_config.c.email_provider_id == provider_id, _config.c.tenant == tenant)
            ).first()
            cursor_rows = connection.execute(
                select(
                    _state.c.folder, _state.c.uid_validity, _state.c.last_uid, _state.c.last_seen_at
                )
                .where(_state.c.email_provider_id == provider_id, _state.c.tenant == tenant)
                .order_by(_state.c.folder)
            ).fetchall()
        if row is None:
            raise ProviderNotFound(f"no provider {provider_id}")
        capabilities = row.server_capabilities
        return ProviderStatusRecord(
            record=record,
            lease_owner=row.lease_owner,
            lease_expires_at=row.lease_expires_at,
            lease_live=bool(row.lease_live),
            last_error=row.last_error,
            capabilities=None if capabilities is None else tuple(str(c) for c in capabilities),
            cursors=tuple(
                CursorRow(r.folder, int(r.uid_validity), int(r.last_uid), r.last_seen_at)
                for r in cursor_rows
            ),
        )

    # -- for the worker ----------------------------------------------------------------------

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
            # A provider parked for re-authorisation stays so until the connect flow ends.
            connection.execute(
                update(_providers)
                .where(
                    _providers.c.id == provider.id,
                    _providers.c.tenant == provider.tenant,
                    _providers.c.status != REAUTH_REQUIRED,
                )
                .values(**provider_values)
            )
