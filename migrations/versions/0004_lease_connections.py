"""Connections a worker holds for a provider, recorded on its lease row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("imap_email_provider_config") as batch:
        batch.add_column(sa.Column("lease_connections", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("imap_email_provider_config") as batch:
        batch.drop_column("lease_connections")
