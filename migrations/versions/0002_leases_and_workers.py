"""Worker registry for fair share, pause flag, per-provider connection budget.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "email_service_workers",
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("started_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("heartbeat_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("worker_id", name="email_service_workers_pkey"),
    )
    with op.batch_alter_table("email_providers") as batch:
        batch.add_column(
            sa.Column("is_paused", sa.Boolean, nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("imap_email_provider_config") as batch:
        batch.add_column(sa.Column("max_connections", sa.Integer))
    op.create_index(
        "imap_email_provider_config_lease_owner_idx", "imap_email_provider_config", ["lease_owner"]
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
    ).first():
        bind.execute(sa.text("SELECT create_reference_table('email_service_workers')"))


def downgrade() -> None:
    op.drop_index(
        "imap_email_provider_config_lease_owner_idx", table_name="imap_email_provider_config"
    )
    with op.batch_alter_table("imap_email_provider_config") as batch:
        batch.drop_column("max_connections")
    with op.batch_alter_table("email_providers") as batch:
        batch.drop_column("is_paused")
    op.drop_table("email_service_workers")
