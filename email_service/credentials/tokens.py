"""Access tokens for the worker's logins: cached, refreshed once, never lost (shell).

``TokenManager.access_token`` answers from the stored access token while it is good
(``oauth.timing``) and otherwise refreshes it, one caller at a time: threads of this
process queue on a per-provider lock, other processes on the database's refresh claim
(``store.oauth_grants``). A revoked grant parks the provider (``ReauthorizationRequired``,
status ``reauth_required``) after that one attempt; an unreachable token endpoint is
``TokenEndpointUnavailable``, which the connection loop backs off from.

Why here and not in ``oauth/`` or ``store/``: it is the service's policy over its own
storage (the grant rows and the secret store), its settings and its metrics, while
``oauth/`` is the protocol client that knows none of those; and ``store/`` only reads and
writes tables, where this also calls the token endpoint and waits for other workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from email_service.credentials.oauth_clients import client_config
from email_service.errors import (
    ReauthorizationRequired,
    SecretUndecryptable,
    TokenEndpointUnavailable,
)
from email_service.metrics import Metrics
from email_service.model import REAUTH_REQUIRED, ProviderConfig
from email_service.oauth.client import IssuedTokens, OAuthClientConfig, refresh_access_token
from email_service.oauth.timing import expires_at, needs_refresh, renew_at
from email_service.settings import MS_PER_S, OAuthSettings
from email_service.store.oauth_grants import GrantState, OAuthGrantStore, StoredTokens
from email_service.store.secrets import SecretStore

logger = logging.getLogger(__name__)

#: Pause between looks at the database while another process holds the refresh claim.
CLAIM_POLL_S = 0.2

RefreshCall = Callable[..., IssuedTokens]


@dataclass(frozen=True)
class AccessToken:
    """A token to log in with, and when sessions using it must log in again."""

    value: str = field(repr=False)
    renew_at: datetime
    #: Just issued by the token endpoint (a login failure with it is not the token's age).
    fresh: bool


class TokenManager:
    """Hands out access tokens per provider; shared by every connection of a process."""

    def __init__(
        self,
        grants: OAuthGrantStore,
        secrets: SecretStore,
        oauth: OAuthSettings,
        *,
        allow_private_hosts: bool,
        owner: str,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        refresh: RefreshCall = refresh_access_token,
    ) -> None:
        self._grants = grants
        self._secrets = secrets
        self._oauth = oauth
        self._allow_private_hosts = allow_private_hosts
        self._owner = owner
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._refresh = refresh
        self._margin_s = oauth.refresh_margin_s
        self._timeout_s = oauth.timeout_s
        #: A claim outlives one slow token request (and the store write after it).
        self._hold_ms = round(2 * oauth.timeout_s * MS_PER_S) + 5000
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def access_token(self, provider: ProviderConfig, *, rejected: str | None = None) -> AccessToken:
        """A good access token; ``rejected`` is one the server just refused (so not that one)."""
        with self._lock_for(provider):
            give_up_at = time.monotonic() + self._hold_ms / 1000
            while True:
                grant = self._grants.load(provider)
                if grant.status == REAUTH_REQUIRED:
                    raise ReauthorizationRequired(
                        f"provider {provider.id} needs to be connected again (OAuth grant revoked)"
                    )
                cached = self._usable_cached(provider, grant, rejected)
                if cached is not None:
                    return cached
                if not grant.refresh_claimed and self._grants.try_claim(
                    provider, grant.version, self._owner, self._hold_ms
                ):
                    token = self._refresh_claimed(provider, grant)
                    if token is not None:
                        return token
                    continue  # a new grant arrived while refreshing: use that one
                if time.monotonic() >= give_up_at:
                    raise TokenEndpointUnavailable(
                        "another worker's token refresh did not finish in time"
                    )
                time.sleep(CLAIM_POLL_S)

    def _lock_for(self, provider: ProviderConfig) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((provider.tenant, provider.id), threading.Lock())

    def _usable_cached(
        self, provider: ProviderConfig, grant: GrantState, rejected: str | None
    ) -> AccessToken | None:
        if grant.refresh_claimed or grant.expires_at is None:
            return None
        if needs_refresh(self._clock(), grant.expires_at, grant.refreshed_at, self._margin_s):
            return None
        try:
            value = self._grants.load_access_token(provider)
        except SecretUndecryptable:
            return None
        if value == rejected:
            return None
        return AccessToken(
            value, renew_at(grant.expires_at, grant.refreshed_at, self._margin_s), False
        )

    def _refresh_claimed(self, provider: ProviderConfig, grant: GrantState) -> AccessToken | None:
        """Refresh under the claim just taken; None if a newer grant was stored meanwhile."""
        try:
            config = self._client_config(provider)
            refresh_token = self._grants.load_refresh_token(provider)
        except SecretUndecryptable as exc:
            message = f"no OAuth refresh token is stored ({exc}): connect the mailbox"
            self._grants.mark_reauth_required(provider, grant.version, message)
            raise ReauthorizationRequired(message) from exc
        except BaseException:
            self._grants.release_claim(provider, grant.version, self._owner)
            raise
        started = self._clock()
        try:
            issued = self._refresh(config, refresh_token=refresh_token, timeout_s=self._timeout_s)
        except ReauthorizationRequired as exc:
            self._count("reauth_required")
            logger.warning("OAuth grant refused; provider parked until reconnected: %s", exc)
            self._grants.mark_reauth_required(provider, grant.version, str(exc))
            raise
        except BaseException as exc:
            self._count("failed")
            logger.warning("OAuth refresh failed: %s", exc)
            self._grants.release_claim(provider, grant.version, self._owner)
            raise
        tokens = StoredTokens(
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            expires_at=expires_at(started, issued.expires_in_s),
            refreshed_at=started,
        )
        if not self._grants.finish_refresh(provider, grant.version, tokens):
            self._count("superseded")
            return None
        self._count("ok")
        logger.info(
            "OAuth access token refreshed (expires %s%s)",
            tokens.expires_at.isoformat(timespec="seconds"),
            ", refresh token rotated" if issued.refresh_token else "",
        )
        return AccessToken(
            issued.access_token, renew_at(tokens.expires_at, started, self._margin_s), True
        )

    def _client_config(self, provider: ProviderConfig) -> OAuthClientConfig:
        secret = self._secrets.load_optional(provider.tenant, provider.client_secret_name())
        return client_config(
            provider, self._oauth, secret, allow_private_hosts=self._allow_private_hosts
        )

    def _count(self, outcome: str) -> None:
        self._metrics.add("email_service_oauth_refreshes_total", outcome=outcome)
