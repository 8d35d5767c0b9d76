"""The ``state`` of the OAuth connect flow: signed, expiring, bound to what started it (core).

A state is ``<payload>.<signature>``: the payload is base64url JSON of ``StateClaims``,
the signature HMAC-SHA256 of the payload under ``EMAIL_SERVICE_OAUTH_STATE_SECRET``. It
binds tenant, provider and redirect URI, expires after ``STATE_TTL_S``, and carries a
nonce: the PKCE verifier is kept on the server under that nonce and taken once, which
makes the state single-use (``api.oauth_flows``). Written with the standard library because
it is twenty lines; a JOSE library would add a header and algorithm choice we must then
restrict.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from email_service.errors import OAuthStateInvalid

#: How long a connect flow may take, from initiate to callback.
STATE_TTL_S = 600
#: Longest state accepted; a real one is about 300 characters.
MAX_STATE_CHARS = 2048


@dataclass(frozen=True)
class StateClaims:
    """What a state binds: who started the flow, for which provider, back to where."""

    nonce: str
    tenant: str
    provider_id: str
    redirect_uri: str
    expires_at_s: int


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def new_code_verifier() -> str:
    """A PKCE code verifier (RFC 7636: 43 to 128 characters of the unreserved set)."""
    return secrets.token_urlsafe(64)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, key: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode("ascii"), hashlib.sha256).digest())


def sign_state(claims: StateClaims, key: str) -> str:
    body = {
        "n": claims.nonce,
        "t": claims.tenant,
        "p": claims.provider_id,
        "r": claims.redirect_uri,
        "e": claims.expires_at_s,
    }
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_signature(payload, key)}"


def verify_state(state: str, key: str, *, now_s: float) -> StateClaims:
    """The claims of a state this service signed and that has not expired.

    Raises ``OAuthStateInvalid`` with ``reason`` ``malformed``, ``bad_signature`` or
    ``expired``; the signature is compared in constant time before anything is decoded.
    """
    if len(state) > MAX_STATE_CHARS or not state.isascii() or state.count(".") != 1:
        raise OAuthStateInvalid("malformed", "the state is not one this service issued")
    payload, signature = state.split(".")
    if not hmac.compare_digest(signature.encode(), _signature(payload, key).encode()):
        raise OAuthStateInvalid("bad_signature", "the state's signature does not verify")
    try:
        body = json.loads(_unb64(payload))
        claims = StateClaims(
            nonce=str(body["n"]),
            tenant=str(body["t"]),
            provider_id=str(body["p"]),
            redirect_uri=str(body["r"]),
            expires_at_s=int(body["e"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise OAuthStateInvalid("malformed", "the state is not one this service issued") from exc
    if now_s >= claims.expires_at_s:
        raise OAuthStateInvalid("expired", "the connect flow took too long: start it again")
    return claims
