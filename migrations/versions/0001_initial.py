"""Initial schema: providers, IMAP configuration, folder cursors, secret store.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "email_providers",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("provider_type", sa.String(20), nullable=False),
        sa.Column("provider_name", sa.String(255), nullable=False),
        sa.Column("mailbox", sa.String(320), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("status", sa.String(50), nullable=False, server_default="pending"),
        sa.Column("last_sync_at", TS),
        sa.Column("error_message", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", "tenant", name="email_providers_pkey"),
        sa.CheckConstraint(
            "provider_type IN ('imap', 'google', 'microsoft')", name="email_providers_type_check"
        ),
    )
    op.create_index("email_providers_tenant_idx", "email_providers", ["tenant"])
    op.create_table(
        "imap_email_provider_config",
        sa.Column("email_provider_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("secure", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("allow_starttls", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("auth_type", sa.String(20), nullable=False, server_default="password"),
        sa.Column("username", sa.String(320), nullable=False),
        sa.Column("folder_filters", JSON, nullable=False, server_default="[]"),
        sa.Column("oauth_authorize_url", sa.Text),
        sa.Column("oauth_token_url", sa.Text),
        sa.Column("oauth_client_id", sa.Text),
        sa.Column("oauth_scopes", sa.Text),
        sa.Column("token_expires_at", TS),
        sa.Column("folder_state", JSON, nullable=False, server_default="{}"),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_expires_at", TS),
        sa.Column("lease_fence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("server_capabilities", JSON),
        sa.Column("connection_timeout_ms", sa.Integer),
        sa.Column("socket_keepalive", sa.Boolean),
        sa.Column("tls_ca_file", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint(
            "email_provider_id", "tenant", name="imap_email_provider_config_pkey"
        ),
        sa.ForeignKeyConstraint(
            ["email_provider_id", "tenant"],
            ["email_providers.id", "email_providers.tenant"],
            ondelete="CASCADE",
            name="imap_email_provider_config_provider_fkey",
        ),
        sa.CheckConstraint(
            "auth_type IN ('password', 'oauth2')", name="imap_email_provider_config_auth_check"
        ),
    )
    op.create_table(
        "imap_folder_state",
        sa.Column("email_provider_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("folder", sa.String(1000), nullable=False),
        sa.Column("uid_validity", sa.BigInteger, nullable=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("last_seen_at", TS),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint(
            "email_provider_id", "tenant", "folder", name="imap_folder_state_pkey"
        ),
        sa.ForeignKeyConstraint(
            ["email_provider_id", "tenant"],
            ["email_providers.id", "email_providers.tenant"],
            ondelete="CASCADE",
            name="imap_folder_state_provider_fkey",
        ),
    )
    op.create_table(
        "email_secrets",
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("tenant", "name", name="email_secrets_pkey"),
    )
    _distribute_on_citus()


def _distribute_on_citus() -> None:
    """On Citus, distribute every table by tenant (colocated, so joins stay local)."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    has_citus = bind.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
    ).first()
    if not has_citus:
        return
    for table in (
        "email_providers",
        "imap_email_provider_config",
        "imap_folder_state",
        "email_secrets",
    ):
        bind.execute(
            sa.text("SELECT create_distributed_table(:table, 'tenant', colocate_with => :colo)"),
            {"table": table, "colo": "default" if table == "email_providers" else "email_providers"},
        )


def downgrade() -> None:
    op.drop_table("email_secrets")
    op.drop_table("imap_folder_state")
    op.drop_table("imap_email_provider_config")
    op.drop_index("email_providers_tenant_idx", table_name="email_providers")
    op.drop_table("email_providers")
