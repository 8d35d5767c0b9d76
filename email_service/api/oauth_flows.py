"""Pending OAuth connect flows in Redis: sealed, taken once, re-sealed on key rotation (shell).

``initiate`` saves a flow (who started it, for which provider and redirect URI, and the PKCE
verifier) under the state's nonce, encrypted with ``EMAIL_SERVICE_SECRET_KEYS`` and
expiring with the state. The callback first *reads* it: a flow that no configured key opens
(sealed under a key since removed) is refused without being used up, so it works again once
the key is back. Only a readable flow that belongs to the caller is then *taken* (GETDEL),
which makes the state single-use. ``email-service keys rotate`` re-seals every pending flow
under the first key (``reencrypt_all``), keeping its expiry, so rotating and then removing
the old key strands no flow that was started before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import redis

from email_service.errors import SecretUndecryptable, TransientError
from email_service.publish.redis_keys import OAUTH_FLOW_PATTERN, oauth_flow_key
from email_service.security.secretbox import SecretBox

#: Keys looked at per SCAN step while re-sealing.
SCAN_COUNT = 500

#: Replace a flow's ciphertext only if it is still the one read, keeping its expiry.
_RESEAL_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') and 1
end
return 0
"""


@dataclass(frozen=True)
class PendingFlow:
    """What initiate keeps for the callback."""

    tenant: str
    provider_id: str
    redirect_uri: str
    code_verifier: str = field(repr=False)
    #: Who started it: the ``sub`` of the tenant token (or ``service:<name>``).
    subject: str


class OAuthFlowStore:
    def __init__(self, client: redis.Redis[bytes], box: SecretBox) -> None:
        self._client = client
        self._box = box

    def save(self, nonce: str, flow: PendingFlow, ttl_s: int) -> None:
        body = {
            "t": flow.tenant,
            "p": flow.provider_id,
            "r": flow.redirect_uri,
            "v": flow.code_verifier,
            "s": flow.subject,
        }
        sealed = self._box.encrypt(json.dumps(body, separators=(",", ":")))
        self._client.set(oauth_flow_key(nonce), sealed, ex=ttl_s)

    def read(self, nonce: str) -> PendingFlow | None:
        """The flow, left in place; None when unknown or used. ``SecretUndecryptable`` when
        no configured key opens it."""
        return self._open(self._client.get(oauth_flow_key(nonce)))

    def take(self, nonce: str) -> PendingFlow | None:
        """The flow, removed (so it works once); None when someone took it first."""
        return self._open(self._client.getdel(oauth_flow_key(nonce)))

    def _open(self, raw: bytes | None) -> PendingFlow | None:
        if raw is None:
            return None
        body = json.loads(self._box.decrypt(bytes(raw), name="of a pending OAuth connect flow"))
        return PendingFlow(
            tenant=str(body["t"]),
            provider_id=str(body["p"]),
            redirect_uri=str(body["r"]),
            code_verifier=str(body["v"]),
            subject=str(body.get("s", "")),
        )

    def reencrypt_all(self) -> tuple[int, int]:
        """Re-seal every pending flow under the first key; (re-sealed, unreadable)."""
        resealed = unreadable = 0
        script = self._client.register_script(_RESEAL_SCRIPT)
        try:
            for key in self._client.scan_iter(match=OAUTH_FLOW_PATTERN, count=SCAN_COUNT):
                raw = self._client.get(key)
                if raw is None:
                    continue  # taken or expired meanwhile
                try:
                    sealed = self._box.reencrypt(bytes(raw), name="of a pending OAuth flow")
                except SecretUndecryptable:
                    unreadable += 1
                    continue
                resealed += int(script(keys=[key], args=[raw, sealed]))
        except redis.RedisError as exc:
            raise TransientError(
                f"Redis (REDIS_URL) failed while re-encrypting pending OAuth connect flows "
                f"({type(exc).__name__}): run `email-service keys rotate` again"
            ) from exc
        return resealed, unreadable
