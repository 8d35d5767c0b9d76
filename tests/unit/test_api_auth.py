"""Bearer token checks: HS256 and RS256 JWTs, claims, tenants, service tokens, settings."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from email_service.api.auth import Caller, TokenVerifier, sign_token
from email_service.api.problems import ApiProblem
from email_service.errors import InvalidSettings
from email_service.settings import Settings
from tests.helpers import TENANT_A, TENANT_B

SECRET = "a-shared-secret-of-more-than-32-chars"
SERVICE_TOKEN = "ops-" + "t" * 40
NOW = 1_800_000_000
RSA = RSAKey.generate_key(2048)
PUBLIC_PEM = RSA.as_pem(private=False).decode()


def settings(**env: str) -> Settings:
    return Settings.from_env(
        {
            "EMAIL_SERVICE_API_JWT_SECRET": SECRET,
            "EMAIL_SERVICE_API_SERVICE_TOKENS": f"ops:{SERVICE_TOKEN}",
            **env,
        }
    )


def hs256(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret), algorithms=["HS256"])


def rs256(claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "RS256"}, claims, RSA, algorithms=["RS256"])


def forge_hs256_with(secret: str) -> str:
    """An HS256 token over ``GOOD`` with ``secret`` as the HMAC key, made by hand (joserfc
    refuses a PEM as an HMAC key, as it should; an attacker's library might not)."""
    import hashlib
    import hmac

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    signing_input = (
        part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + part(json.dumps(GOOD).encode())
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def verify(verifier: TokenVerifier, header: str | None, tenant_header: str | None = None) -> Caller:
    return verifier.verify(header, tenant_header, now_s=NOW)


GOOD = {"tenant": TENANT_A, "sub": "user-1", "exp": NOW + 300}


def test_a_valid_hs256_token_gives_its_tenant() -> None:
    verifier = TokenVerifier.from_settings(settings())
    assert verify(verifier, f"Bearer {hs256(GOOD)}") == Caller(TENANT_A, "user-1")
    assert verify(verifier, f"bearer  {hs256(GOOD)} ") == Caller(TENANT_A, "user-1")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Token abc", "expected Authorization: Bearer"),
        ("Bearer", "expected Authorization: Bearer"),
        ("Bearer abc.def", "malformed"),
        (f"Bearer {hs256(GOOD, secret='another-secret-of-more-than-32-chars')}", "signature"),
        (f"Bearer {hs256({**GOOD, 'exp': NOW - 100})}", "expired"),
        (f"Bearer {hs256({'tenant': TENANT_A})}", "'exp'"),
        (f"Bearer {hs256({**GOOD, 'nbf': NOW + 300})}", "'nbf'"),
        (f"Bearer {hs256({**GOOD, 'iat': NOW + 300})}", "'iat'"),
        (f"Bearer {hs256({**GOOD, 'exp': 'never'})}", "'exp'"),
        (f"Bearer {hs256({'sub': 'x', 'exp': NOW + 300})}", "'tenant' claim"),
        (f"Bearer {hs256({**GOOD, 'tenant': ''})}", "'tenant' claim"),
        (f"Bearer {hs256({**GOOD, 'tenant': ['a', 'b']})}", "'tenant' claim"),
        ("Bearer " + hs256({**GOOD, "tenant": "tab\tin"}), "'tenant' claim"),
        (f"Bearer {hs256({**GOOD, 'tenant': 'acme'})}", "claim is not a UUID"),
        (f"Bearer {hs256({**GOOD, 'tenant': str(uuid.UUID(int=7))})}", "claim is not a UUID"),
        (f"Bearer {unsigned(GOOD)}", "malformed"),
        (f"Bearer {rs256(GOOD)}", "malformed"),
        (f"Bearer {SERVICE_TOKEN}x", "malformed"),
    ],
    ids=[
        "missing",
        "empty",
        "other-scheme",
        "no-token",
        "garbage",
        "wrong-secret",
        "expired",
        "no-exp",
        "not-yet-valid",
        "issued-in-the-future",
        "exp-not-a-number",
        "no-tenant",
        "empty-tenant",
        "tenant-not-a-string",
        "tenant-control-character",
        "tenant-not-a-uuid",
        "tenant-uuid-of-no-version",
        "alg-none",
        "rs256-when-hs256-configured",
        "service-token-with-a-suffix",
    ],
)
def test_bad_tokens_get_401(header: str | None, message: str) -> None:
    verifier = TokenVerifier.from_settings(settings())
    with pytest.raises(ApiProblem) as raised:
        verify(verifier, header)
    assert raised.value.status == 401
    assert message in raised.value.message
    assert raised.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_leeway_of_thirty_seconds() -> None:
    verifier = TokenVerifier.from_settings(settings())
    assert verify(verifier, f"Bearer {hs256({**GOOD, 'exp': NOW - 10})}").tenant == TENANT_A
    assert verify(verifier, f"Bearer {hs256({**GOOD, 'nbf': NOW + 10})}").tenant == TENANT_A


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"iss": "https://ui.example.com", "aud": "email-service"}, True),
        ({"iss": "https://ui.example.com", "aud": ["other", "email-service"]}, True),
        ({"iss": "https://evil.example", "aud": "email-service"}, False),
        ({"iss": "https://ui.example.com", "aud": "other"}, False),
        ({"aud": "email-service"}, False),
        ({"iss": "https://ui.example.com"}, False),
    ],
    ids=["both", "aud-list", "wrong-iss", "wrong-aud", "no-iss", "no-aud"],
)
def test_issuer_and_audience_when_configured(claims: dict[str, Any], accepted: bool) -> None:
    verifier = TokenVerifier.from_settings(
        settings(
            EMAIL_SERVICE_API_JWT_ISSUER="https://ui.example.com",
            EMAIL_SERVICE_API_JWT_AUDIENCE="email-service",
        )
    )
    header = f"Bearer {hs256({**GOOD, **claims})}"
    if accepted:
        assert verify(verifier, header).tenant == TENANT_A
    else:
        with pytest.raises(ApiProblem):
            verify(verifier, header)


def test_rs256_with_a_public_key_and_no_algorithm_confusion() -> None:
    verifier = TokenVerifier.from_settings(
        settings(
            EMAIL_SERVICE_API_JWT_ALGORITHM="rs256", EMAIL_SERVICE_API_JWT_PUBLIC_KEY=PUBLIC_PEM
        )
    )
    assert verify(verifier, f"Bearer {rs256(GOOD)}") == Caller(TENANT_A, "user-1")
    forged = forge_hs256_with(PUBLIC_PEM)  # HS256 "signed" with the public key
    with pytest.raises(ApiProblem):
        verify(verifier, f"Bearer {forged}")
    with pytest.raises(ApiProblem):
        verify(verifier, f"Bearer {hs256(GOOD)}")


def test_the_tenant_claim_is_configurable() -> None:
    verifier = TokenVerifier.from_settings(settings(EMAIL_SERVICE_API_TENANT_CLAIM="org_id"))
    token = hs256({"org_id": TENANT_B, "tenant": TENANT_A, "exp": NOW + 60})
    assert verify(verifier, f"Bearer {token}").tenant == TENANT_B


def test_service_tokens_name_their_tenant_in_a_header() -> None:
    verifier = TokenVerifier.from_settings(settings())
    caller = verify(verifier, f"Bearer {SERVICE_TOKEN}", TENANT_A)
    assert caller == Caller(TENANT_A, "service:ops")
    with pytest.raises(ApiProblem) as raised:
        verify(verifier, f"Bearer {SERVICE_TOKEN}")
    assert raised.value.status == 422 and raised.value.fields[0].field == "X-Tenant-Id"
    # a tenant token ignores the header: the tenant is the claim's
    assert verify(verifier, f"Bearer {hs256(GOOD)}", TENANT_B).tenant == TENANT_A


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "EMAIL_SERVICE_API_JWT_SECRET"),
        ({"EMAIL_SERVICE_API_JWT_ALGORITHM": "rs256"}, "EMAIL_SERVICE_API_JWT_PUBLIC_KEY"),
        (
            {
                "EMAIL_SERVICE_API_JWT_ALGORITHM": "rs256",
                "EMAIL_SERVICE_API_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nnope\n"
                "-----END PUBLIC KEY-----",
            },
            "EMAIL_SERVICE_API_JWT_PUBLIC_KEY",
        ),
        (
            {
                "EMAIL_SERVICE_API_JWT_ALGORITHM": "rs256",
                "EMAIL_SERVICE_API_JWT_PUBLIC_KEY": RSA.as_pem(private=True).decode(),
            },
            "EMAIL_SERVICE_API_JWT_PUBLIC_KEY",
        ),
    ],
    ids=["no-secret", "no-public-key", "bad-public-key", "private-key"],
)
def test_missing_or_bad_key_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(InvalidSettings, match=variable):
        TokenVerifier.from_settings(Settings.from_env(env))


def test_sign_token_makes_tokens_the_verifier_accepts() -> None:
    configured = settings(
        EMAIL_SERVICE_API_JWT_ISSUER="https://ui.example.com",
        EMAIL_SERVICE_API_JWT_AUDIENCE="email-service",
    )
    token = sign_token(configured, TENANT_A, ttl_s=60, subject="dev")
    caller = TokenVerifier.from_settings(configured).verify(
        f"Bearer {token}", None, now_s=int(time.time())
    )
    assert caller == Caller(TENANT_A, "dev")
    with pytest.raises(InvalidSettings):
        sign_token(
            settings(
                EMAIL_SERVICE_API_JWT_ALGORITHM="rs256", EMAIL_SERVICE_API_JWT_PUBLIC_KEY=PUBLIC_PEM
            ),
            TENANT_A,
        )
