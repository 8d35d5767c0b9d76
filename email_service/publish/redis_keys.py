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

    Fields, per folder: ``events:<folder>`` (events added, replays included),
    ``dead_letters:<folder>`` (dead letters added), ``dead_letters_replayed:<folder>`` (dead
    letters replayed as events since), ``gmail_copies:<folder>`` (Gmail copies of messages
    already published from another label folder, recorded and not added), and
    ``last_event_ms:<folder>`` (Redis server time of the newest entry).
    """
    return f"{KEY_PREFIX}:stats:{json.dumps([tenant, provider_id])}"


def gmail_message_key(tenant: str, provider_id: str, gmail_msgid: int) -> str:
    """Hash of one Gmail message (X-GM-MSGID) of a provider, across its label folders.

    Fields: ``event_id`` (the event published for its first copy) and
    ``copy:<folder>/<uidvalidity>/<uid>`` (each copy seen, with that copy's own event id).
    """
    return f"{KEY_PREFIX}:gmail:{json.dumps([tenant, provider_id, gmail_msgid])}"


def replayed_key(event_id: str) -> str:
    """Set (NX) when a dead letter is replayed as the event ``event_id``; holds its stream id."""
    return f"{KEY_PREFIX}:replayed:{event_id}"


def oauth_flow_key(nonce: str) -> str:
    """One pending OAuth connect flow (its PKCE verifier, encrypted), taken once by the callback."""
    return f"{KEY_PREFIX}:oauth-flow:{nonce}"


#: SCAN pattern of every pending OAuth connect flow (``keys rotate`` re-seals them).
OAUTH_FLOW_PATTERN = oauth_flow_key("*")
