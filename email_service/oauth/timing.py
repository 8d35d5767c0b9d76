"""When an access token is refreshed and when a session logged in with it must reconnect (core).

A token is renewed ``margin`` before it expires, where the margin is
``IMAP_OAUTH_REFRESH_MARGIN_MS`` but never more than a quarter of the token's lifetime
(so a token that lives 60 s is not refreshed the moment it arrives). A connection logged
in with a token reconnects at the same moment, so no session outlives its token; the
connection that gets there first refreshes, the others take the new token.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: Lifetime assumed when the token endpoint does not say (``expires_in`` is optional).
DEFAULT_LIFETIME_S = 3600
#: Shortest time between a refresh and the next one, whatever the token says.
MIN_RENEW_AFTER_S = 1.0


def expires_at(issued_at: datetime, expires_in_s: int | None) -> datetime:
    lifetime = DEFAULT_LIFETIME_S if expires_in_s is None or expires_in_s <= 0 else expires_in_s
    return issued_at + timedelta(seconds=lifetime)


def renew_at(expires: datetime, refreshed_at: datetime | None, margin_s: float) -> datetime:
    """When the token should be replaced, and sessions using it reconnected."""
    margin = margin_s
    if refreshed_at is not None:
        lifetime = (expires - refreshed_at).total_seconds()
        margin = min(margin_s, max(lifetime / 4, 0.0))
        earliest = refreshed_at + timedelta(seconds=MIN_RENEW_AFTER_S)
        return max(expires - timedelta(seconds=margin), min(earliest, expires))
    return expires - timedelta(seconds=margin)


def needs_refresh(
    now: datetime, expires: datetime | None, refreshed_at: datetime | None, margin_s: float
) -> bool:
    """Whether a token with this expiry must be refreshed before use."""
    return expires is None or now >= renew_at(expires, refreshed_at, margin_s)
