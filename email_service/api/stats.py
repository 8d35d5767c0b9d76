"""The per-folder counters the publisher keeps in Redis, read and removed for the API (shell).

The publish script (``publish/publisher.py``) counts events and dead letters per folder in the hash
``publish.redis_keys.provider_stats_key``; the status call reads it and the delete call removes it.
Redis being down does not fail either call: the status shows ``countersAvailable: false``
and a delete leaves the (id-specific, never reused) hash behind with a warning.
"""

from __future__ import annotations

import logging

import redis

from email_service.publish.redis_keys import provider_stats_key

logger = logging.getLogger(__name__)


def load_provider_stats(
    client: redis.Redis[bytes], tenant: str, provider_id: str
) -> dict[str, str] | None:
    """The provider's counters (``events:<folder>`` ...), or None when Redis is unavailable."""
    try:
        raw = client.hgetall(provider_stats_key(tenant, provider_id))
    except redis.RedisError as exc:
        logger.warning("provider counters unavailable: %s", type(exc).__name__)
        return None
    return {
        key.decode("utf-8", "replace"): value.decode("utf-8", "replace")
        for key, value in raw.items()
    }


def delete_provider_stats(client: redis.Redis[bytes], tenant: str, provider_id: str) -> bool:
    """Remove the provider's counters; False (logged) when Redis is unavailable."""
    try:
        client.delete(provider_stats_key(tenant, provider_id))
    except redis.RedisError as exc:
        logger.warning("provider counters not removed: %s", type(exc).__name__)
        return False
    return True
