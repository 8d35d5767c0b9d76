"""Every Redis key and stream name the service uses, in one place (core)."""

from __future__ import annotations

import json

from email_service.model import FolderKey

#: Prefix of the service's own keys, so operators can find (and size) them with SCAN.
KEY_PREFIX = "email-service"


def published_mark_key(key: FolderKey, uid_validity: int) -> str:
    """Highest UID of this folder (at this UIDVALIDITY) already on a stream.

    The suffix is JSON so tenants, ids and folder names with ``:`` cannot collide.
    """
    suffix = json.dumps([key.tenant, key.provider_id, key.folder, uid_validity])
    return f"{KEY_PREFIX}:published:{suffix}"


def provider_stats_key(tenant: str, provider_id: str) -> str:
    """Hash of per-folder counters kept by the publish script, for the status API.

    Fields: ``events:<folder>`` and ``dead_letters:<folder>`` (counts) and
    ``last_event_ms:<folder>`` (Redis server time of the newest entry).
    """
    return f"{KEY_PREFIX}:stats:{json.dumps([tenant, provider_id])}"
