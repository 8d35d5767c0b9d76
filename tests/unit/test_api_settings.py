"""The API's settings: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest

from email_service.errors import InvalidSettings
from email_service.settings import Settings

#: A PEM with its line breaks written as \\n, as in a one-line environment variable.
ESCAPED_PEM = r"-----BEGIN PUBLIC KEY-----\nAB\n-----END PUBLIC KEY-----"


def test_api_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.api.port == 8081
    assert settings.api.jwt_algorithm == "hs256"
    assert settings.api.jwt_secret is None and settings.api.jwt_public_key is None
    assert settings.api.tenant_claim == "tenant"
    assert settings.api.service_tokens == ()
    assert settings.api.cors_origins == ()
    assert settings.api.max_body_bytes == 65536
    assert settings.api.imap_calls_per_minute == 10
    assert settings.api.imap_timeout_s == 20
    assert settings.imap.allow_private_hosts is False


@pytest.mark.parametrize(
    ("env", "attr", "expected"),
    [
        (
            {"EMAIL_SERVICE_API_CORS_ORIGINS": "https://UI.example.com/, http://localhost:3000"},
            "api.cors_origins",
            ("https://ui.example.com", "http://localhost:3000"),
        ),
        ({"EMAIL_SERVICE_API_CORS_ORIGINS": "*"}, "api.cors_origins", ("*",)),
        (
            {"EMAIL_SERVICE_API_SERVICE_TOKENS": "ops:" + "a" * 32 + ", ci-bot:" + "b" * 40},
            "api.service_tokens",
            (("ops", "a" * 32), ("ci-bot", "b" * 40)),
        ),
        (
            {"EMAIL_SERVICE_API_JWT_PUBLIC_KEY": ESCAPED_PEM},
            "api.jwt_public_key",
            "-----BEGIN PUBLIC KEY-----\nAB\n-----END PUBLIC KEY-----\n",
        ),
        ({"EMAIL_SERVICE_API_JWT_ALGORITHM": "RS256"}, "api.jwt_algorithm", "rs256"),
        ({"IMAP_ALLOW_PRIVATE_HOSTS": "true"}, "imap.allow_private_hosts", True),
    ],
    ids=["origins", "any-origin", "service-tokens", "pem-escapes", "algorithm", "private-hosts"],
)
def test_api_values_are_parsed(env: dict[str, str], attr: str, expected: object) -> None:
    group, name = attr.split(".")
    assert getattr(getattr(Settings.from_env(env), group), name) == expected


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"EMAIL_SERVICE_API_JWT_SECRET": "short"}, "EMAIL_SERVICE_API_JWT_SECRET"),
        ({"EMAIL_SERVICE_API_JWT_ALGORITHM": "es256"}, "EMAIL_SERVICE_API_JWT_ALGORITHM"),
        ({"EMAIL_SERVICE_API_JWT_PUBLIC_KEY": "not pem"}, "EMAIL_SERVICE_API_JWT_PUBLIC_KEY"),
        ({"EMAIL_SERVICE_API_SERVICE_TOKENS": "no-colon"}, "EMAIL_SERVICE_API_SERVICE_TOKENS"),
        ({"EMAIL_SERVICE_API_SERVICE_TOKENS": "ops:short"}, "EMAIL_SERVICE_API_SERVICE_TOKENS"),
        ({"EMAIL_SERVICE_API_CORS_ORIGINS": "ui.example.com"}, "EMAIL_SERVICE_API_CORS_ORIGINS"),
        ({"EMAIL_SERVICE_API_CORS_ORIGINS": "https://a.b/path"}, "EMAIL_SERVICE_API_CORS_ORIGINS"),
        ({"EMAIL_SERVICE_API_MAX_BODY_BYTES": "10"}, "EMAIL_SERVICE_API_MAX_BODY_BYTES"),
        ({"IMAP_ALLOW_PRIVATE_HOSTS": "sometimes"}, "IMAP_ALLOW_PRIVATE_HOSTS"),
    ],
    ids=[
        "short-secret",
        "algorithm",
        "pem",
        "token-format",
        "token-length",
        "origin-scheme",
        "origin-path",
        "body-limit",
        "private-hosts",
    ],
)
def test_bad_api_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(InvalidSettings, match=name):
        Settings.from_env(env)


def test_secrets_are_redacted_in_repr() -> None:
    settings = Settings.from_env(
        {
            "EMAIL_SERVICE_API_JWT_SECRET": "jwt-secret-" + "j" * 30,
            "EMAIL_SERVICE_API_SERVICE_TOKENS": "ops:" + "s" * 40,
        }
    )
    assert "jjjj" not in repr(settings) and "ssss" not in repr(settings)


def test_a_bad_secret_is_not_shown_in_the_error() -> None:
    with pytest.raises(InvalidSettings) as raised:
        Settings.from_env({"EMAIL_SERVICE_API_JWT_SECRET": "tiny-secret"})
    assert "tiny-secret" not in str(raised.value)
