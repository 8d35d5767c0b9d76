"""Who is calling: bearer JWTs and operators' service tokens (shell; the only module that
imports the JOSE library).

JOSE is authlib's: ``authlib.jose`` is deprecated in favour of ``joserfc``, the same
authors' library that authlib itself now depends on, so that is what is used here.

- A **tenant token** is a JWT signed with HS256 (``EMAIL_SERVICE_API_JWT_SECRET``) or RS256
  (``EMAIL_SERVICE_API_JWT_PUBLIC_KEY``); only the configured algorithm is accepted, so a
  token cannot choose its own. It must carry ``exp``; ``nbf`` and ``iat`` are checked when
  present (30 s leeway); ``iss`` and ``aud`` must match when those settings are set. The
  tenant is the claim ``EMAIL_SERVICE_API_TENANT_CLAIM`` (``tenant``), and every query of the
  call is confined to it.
- A **service token** (``EMAIL_SERVICE_API_SERVICE_TOKENS``, ``name:token`` pairs) is for
  operators' tools: it is compared in constant time with each configured token, and the
  call names its tenant in the ``X-Tenant-Id`` header; it is then confined to that tenant
  like any other call.

Every failure is a 401 with ``WWW-Authenticate: Bearer``; the message says what was wrong
with the token, never anything about the key.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import OctKey, RSAKey

from email_service.api.problems import ApiProblem, FieldProblem
from email_service.api.validation import is_valid_tenant
from email_service.errors import InvalidSettings
from email_service.settings import Settings

#: Clock skew tolerated between the token issuer and us, in seconds.
LEEWAY_S = 30
#: Header naming the tenant of a service-token call.
TENANT_HEADER = "X-Tenant-Id"
#: Lifetime of a token printed by ``email-service api-token`` unless told otherwise.
DEFAULT_TOKEN_TTL_S = 3600


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: the tenant every query is confined to, and who it is."""

    tenant: str
    #: ``sub`` of a tenant token, or ``service:<name>``; for logs.
    subject: str


def _unauthorized(message: str) -> ApiProblem:
    return ApiProblem(
        401,
        "unauthorized",
        message,
        headers={"WWW-Authenticate": 'Bearer realm="email-service", error="invalid_token"'},
    )


class TokenVerifier:
    """Checks the ``Authorization`` header of a call; built once from settings."""

    def __init__(
        self,
        *,
        algorithm: str,
        key: OctKey | RSAKey,
        issuer: str | None,
        audience: str | None,
        tenant_claim: str,
        service_tokens: Sequence[tuple[str, str]],
    ) -> None:
        self._algorithm = algorithm
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._tenant_claim = tenant_claim
        self._service_tokens = tuple((name, token.encode()) for name, token in service_tokens)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """The verifier, or ``InvalidSettings`` naming the variable that is missing or bad."""
        key_text = settings.require_api_jwt_key()
        key: OctKey | RSAKey
        if settings.api.jwt_algorithm == "hs256":
            key = OctKey.import_key(key_text)
        else:
            try:
                key = RSAKey.import_key(key_text)
            except (JoseError, ValueError, TypeError) as exc:
                raise InvalidSettings(
                    "EMAIL_SERVICE_API_JWT_PUBLIC_KEY is not a usable RSA public key "
                    f"({type(exc).__name__}): give the PEM of the token issuer's public key"
                ) from None
            if key.is_private:
                raise InvalidSettings(
                    "EMAIL_SERVICE_API_JWT_PUBLIC_KEY holds a private key: give only the "
                    "public key (openssl rsa -pubout)"
                )
        return cls(
            algorithm=settings.api.jwt_algorithm.upper(),
            key=key,
            issuer=settings.api.jwt_issuer,
            audience=settings.api.jwt_audience,
            tenant_claim=settings.api.tenant_claim,
            service_tokens=settings.api.service_tokens,
        )

    def verify(self, authorization: str | None, tenant_header: str | None, *, now_s: int) -> Caller:
        """The caller, or ``ApiProblem`` (401, or 422 for a service call without tenant)."""
        if not authorization:
            raise _unauthorized("missing bearer token: send Authorization: Bearer <token>")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("expected Authorization: Bearer <token>")
        service = self._match_service_token(token)
        if service is not None:
            return self._service_caller(service, tenant_header)
        claims = self._decode(token, now_s)
        tenant = claims.get(self._tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise _unauthorized(f"the token has no usable {self._tenant_claim!r} claim")
        if not is_valid_tenant(tenant):
            raise _unauthorized(
                f"the token's {self._tenant_claim!r} claim is not a UUID: tenant ids are UUIDs "
                "(the product's event consumer drops events of any other tenant id)"
            )
        subject = claims.get("sub")
        return Caller(tenant=tenant, subject=subject if isinstance(subject, str) else "")

    def _match_service_token(self, token: str) -> str | None:
        found = None
        presented = token.encode()
        for name, expected in self._service_tokens:  # no early exit: constant time per token
            if hmac.compare_digest(presented, expected):
                found = name
        return found

    def _service_caller(self, name: str, tenant_header: str | None) -> Caller:
        if not is_valid_tenant(tenant_header):
            raise ApiProblem(
                422,
                "validation_failed",
                f"{TENANT_HEADER}: a service token names the tenant it acts for in this header",
                fields=(FieldProblem(TENANT_HEADER, "expected a tenant id (a UUID)"),),
            )
        assert tenant_header is not None
        return Caller(tenant=tenant_header, subject=f"service:{name}")

    def _decode(self, token: str, now_s: int) -> Mapping[str, Any]:
        try:
            decoded = jwt.decode(token, self._key, algorithms=[self._algorithm])
        except (JoseError, ValueError, TypeError):
            raise _unauthorized("the token is malformed or its signature does not verify") from None
        options: dict[str, Any] = {"exp": {"essential": True}}
        if self._issuer is not None:
            options["iss"] = {"essential": True, "value": self._issuer}
        if self._audience is not None:
            options["aud"] = {"essential": True, "value": self._audience}
        registry = jwt.JWTClaimsRegistry(now=now_s, leeway=LEEWAY_S, **options)
        try:
            registry.validate(decoded.claims)
        except ExpiredTokenError:
            raise _unauthorized("the token has expired") from None
        except ClaimError as exc:
            raise _unauthorized(f"the token's {exc.claim!r} claim is missing or wrong") from None
        return decoded.claims


def sign_token(
    settings: Settings, tenant: str, *, ttl_s: int = DEFAULT_TOKEN_TTL_S, subject: str = ""
) -> str:
    """An HS256 token for ``tenant`` signed with the configured secret (for development)."""
    if settings.api.jwt_algorithm != "hs256":
        raise InvalidSettings(
            "tokens can only be made here with EMAIL_SERVICE_API_JWT_ALGORITHM=hs256; with "
            "rs256 the token issuer holds the private key"
        )
    now = int(time.time())
    claims: dict[str, Any] = {settings.api.tenant_claim: tenant, "iat": now, "exp": now + ttl_s}
    if subject:
        claims["sub"] = subject
    if settings.api.jwt_issuer is not None:
        claims["iss"] = settings.api.jwt_issuer
    if settings.api.jwt_audience is not None:
        claims["aud"] = settings.api.jwt_audience
    key = OctKey.import_key(settings.require_api_jwt_key())
    return jwt.encode({"alg": "HS256"}, claims, key, algorithms=["HS256"])
