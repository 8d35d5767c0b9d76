"""How each variable's text is read: ``ValueError`` says what is accepted (core)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def parse_int(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if number < minimum:
            raise ValueError(f"expected a whole number of at least {minimum}")
        return number

    return parse


def parse_fraction(value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError("expected a number between 0 and 1") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError("expected a number between 0 and 1")
    return number


def parse_keys(value: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in value.split(",") if key.strip())
    if not keys:
        raise ValueError("expected one or more keys separated by commas")
    return keys


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return lowered

    return parse


def parse_database_url(value: str) -> str:
    url = value.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    raise ValueError("expected a postgresql://user@host:port/dbname or sqlite:///path URL")


def parse_redis_url(value: str) -> str:
    url = value.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://host:port/db or rediss:// URL")
    return url


def parse_text(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty value")
    return value.strip()


#: Shortest HS256 secret accepted: RFC 7518 (3.2) asks for a key as long as the hash (256 bits).
MIN_JWT_SECRET_CHARS = 32
#: Shortest service token accepted, so tokens cannot be guessed.
MIN_SERVICE_TOKEN_CHARS = 32


def parse_jwt_secret(value: str) -> str:
    secret = value.strip()
    if len(secret) < MIN_JWT_SECRET_CHARS:
        raise ValueError(f"expected a random secret of at least {MIN_JWT_SECRET_CHARS} characters")
    return secret


def parse_pem(value: str) -> str:
    pem = value.strip().replace("\\n", "\n")
    if not pem.startswith("-----BEGIN ") or "-----END " not in pem:
        raise ValueError("expected a PEM public key (-----BEGIN PUBLIC KEY----- ...)")
    return pem + "\n"


def parse_service_tokens(value: str) -> tuple[tuple[str, str], ...]:
    tokens: list[tuple[str, str]] = []
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        name, sep, token = entry.partition(":")
        if not sep or not name.strip() or not name.strip().replace("-", "").isalnum():
            raise ValueError(
                "expected name:token pairs separated by commas (names: letters, digits, -)"
            )
        if len(token.strip()) < MIN_SERVICE_TOKEN_CHARS:
            raise ValueError(f"expected tokens of at least {MIN_SERVICE_TOKEN_CHARS} characters")
        tokens.append((name.strip(), token.strip()))
    if not tokens:
        raise ValueError("expected one or more name:token pairs separated by commas")
    return tuple(tokens)


def parse_origins(value: str) -> tuple[str, ...]:
    origins: list[str] = []
    for entry in (item.strip().rstrip("/") for item in value.split(",")):
        if not entry:
            continue
        scheme, sep, rest = entry.partition("://")
        if entry != "*" and (
            not sep or scheme not in {"http", "https"} or not rest or "/" in rest or "?" in rest
        ):
            raise ValueError("expected origins like https://app.example.com, or *")
        origins.append(entry.lower())
    if not origins:
        raise ValueError("expected one or more origins separated by commas")
    return tuple(origins)


def parse_http_url(value: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.fragment:
        raise ValueError("expected an absolute http(s) URL without a #fragment")
    return url


def parse_redirect_uris(value: str) -> tuple[str, ...]:
    uris = tuple(parse_http_url(item) for item in value.split(",") if item.strip())
    if not uris:
        raise ValueError("expected one or more URLs separated by commas")
    return uris
