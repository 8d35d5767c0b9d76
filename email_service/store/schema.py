"""Table definitions shared by the stores (core: declarations only).

The product's tables ``email_providers`` and ``imap_email_provider_config`` keep the names
of DESIGN.md section 4. Ours: ``imap_folder_state`` (one row per folder: the cursor, so two
folders of one provider never race on one JSON value) and ``email_secrets`` (the encrypted
secret store). Every table carries ``tenant`` and leads its primary key with it or the
provider id, so Citus can distribute all of them by ``tenant``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on PostgreSQL and SQLite alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite's CURRENT_TIMESTAMP
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


JsonColumn = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()

email_providers = Table(
    "email_providers",
    metadata,
    Column("id", String(64), nullable=False),
    Column("tenant", String(255), nullable=False),
    Column("provider_type", String(20), nullable=False),
    Column("provider_name", String(255), nullable=False),
    Column("mailbox", String(320), nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("is_paused", Boolean, nullable=False, default=False),
    Column("status", String(50), nullable=False, default="pending"),
    Column("last_sync_at", UtcDateTime),
    Column("error_message", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("id", "tenant", name="email_providers_pkey"),
)

imap_email_provider_config = Table(
    "imap_email_provider_config",
    metadata,
    Column("email_provider_id", String(64), nullable=False),
    Column("tenant", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("secure", Boolean, nullable=False, default=True),
    Column("allow_starttls", Boolean, nullable=False, default=False),
    Column("auth_type", String(20), nullable=False, default="password"),
    Column("username", String(320), nullable=False),
    Column("folder_filters", JsonColumn, nullable=False, default=list),
    Column("oauth_authorize_url", Text),
    Column("oauth_token_url", Text),
    Column("oauth_client_id", Text),
    Column("oauth_scopes", Text),
    Column("token_expires_at", UtcDateTime),
    # Bumped by every stored refresh and connect: the compare-and-set of single-flight refresh.
    Column("oauth_token_version", BigInteger, nullable=False, default=0),
    Column("token_refreshed_at", UtcDateTime),
    # Who is refreshing the token now, and until when (database clock); see oauth_grants.
    Column("oauth_refresh_owner", String(255)),
    Column("oauth_refresh_until", UtcDateTime),
    Column("folder_state", JsonColumn, nullable=False, default=dict),
    Column("lease_owner", String(255)),
    Column("lease_expires_at", UtcDateTime),
    Column("lease_fence", BigInteger, nullable=False, default=0),
    # IMAP connections the lease owner may hold for this provider (its plan), so every
    # worker can keep a tenant within IMAP_MAX_CONNECTIONS_PER_TENANT (connection_records).
    Column("lease_connections", Integer),
    Column("server_capabilities", JsonColumn),
    Column("connection_timeout_ms", Integer),
    Column("socket_keepalive", Boolean),
    Column("tls_ca_file", Text),
    Column("max_connections", Integer),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("email_provider_id", "tenant", name="imap_email_provider_config_pkey"),
    ForeignKeyConstraint(
        ["email_provider_id", "tenant"],
        ["email_providers.id", "email_providers.tenant"],
        ondelete="CASCADE",
        name="imap_email_provider_config_provider_fkey",
    ),
)

imap_folder_state = Table(
    "imap_folder_state",
    metadata,
    Column("email_provider_id", String(64), nullable=False),
    Column("tenant", String(255), nullable=False),
    Column("folder", String(1000), nullable=False),
    Column("uid_validity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, nullable=False),
    Column("last_seen_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("email_provider_id", "tenant", "folder", name="imap_folder_state_pkey"),
    ForeignKeyConstraint(
        ["email_provider_id", "tenant"],
        ["email_providers.id", "email_providers.tenant"],
        ondelete="CASCADE",
        name="imap_folder_state_provider_fkey",
    ),
)

email_secrets = Table(
    "email_secrets",
    metadata,
    Column("tenant", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("tenant", "name", name="email_secrets_pkey"),
)

email_service_workers = Table(
    "email_service_workers",
    metadata,
    Column("worker_id", String(255), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("worker_id", name="email_service_workers_pkey"),
)
