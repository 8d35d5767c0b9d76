"""OAuth grants: token version (compare-and-set), refresh claim, when the token was refreshed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("imap_email_provider_config") as batch:
        batch.add_column(
            sa.Column("oauth_token_version", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("token_refreshed_at", TS))
        batch.add_column(sa.Column("oauth_refresh_owner", sa.String(255)))
        batch.add_column(sa.Column("oauth_refresh_until", TS))


def downgrade() -> None:
    with op.batch_alter_table("imap_email_provider_config") as batch:
        batch.drop_column("oauth_refresh_until")
        batch.drop_column("oauth_refresh_owner")
        batch.drop_column("token_refreshed_at")
        batch.drop_column("oauth_token_version")
