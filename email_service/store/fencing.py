"""The fencing check every provider-state write makes first (shell)."""

from __future__ import annotations

from sqlalchemy import Connection, update

from email_service.errors import LeaseLost
from email_service.store.schema import imap_email_provider_config

_config = imap_email_provider_config


def check_fence(connection: Connection, tenant: str, provider_id: str, fence: int) -> None:
    """Lock the provider's config row and check the fence, or raise ``LeaseLost``.

    The row lock (a no-op UPDATE that matches only with the right fence) serialises this
    transaction's writes against a lease take by another worker, which changes the fence.
    """
    matched = connection.execute(
        update(_config)
        .where(
            _config.c.email_provider_id == provider_id,
            _config.c.tenant == tenant,
            _config.c.lease_fence == fence,
        )
        .values(lease_fence=fence)
    ).rowcount
    if matched == 0:
        raise LeaseLost(f"provider {provider_id}: fencing value {fence} is stale")
