"""The API's and OAuth's settings (core: declarations)."""

from __future__ import annotations

from dataclasses import dataclass

from email_service.settings.fields import Group, setting
from email_service.settings.parsers import (
    parse_choice,
    parse_http_url,
    parse_int,
    parse_jwt_secret,
    parse_origins,
    parse_pem,
    parse_redirect_uris,
    parse_service_tokens,
    parse_text,
)


@dataclass(frozen=True, repr=False)
class ApiSettings(Group):
    """The tenant HTTP API: tokens, CORS, bodies, its calls to mail servers."""

    port: int = setting(
        "EMAIL_SERVICE_API_PORT",
        parse_int(0),
        8081,
        "port of `email-service api`: the provider API, /health, /ready and /metrics",
    )
    jwt_algorithm: str = setting(
        "EMAIL_SERVICE_API_JWT_ALGORITHM",
        parse_choice("hs256", "rs256"),
        "hs256",
        "how API bearer tokens are signed: hs256 (shared secret) or rs256 (public key)",
    )
    jwt_secret: str | None = setting(
        "EMAIL_SERVICE_API_JWT_SECRET",
        parse_jwt_secret,
        None,
        "shared secret that HS256 API tokens are signed with (32 characters or more)",
        secret=True,
    )
    jwt_public_key: str | None = setting(
        "EMAIL_SERVICE_API_JWT_PUBLIC_KEY",
        parse_pem,
        None,
        "PEM public key that RS256 API tokens are checked with (\\n escapes allowed)",
    )
    jwt_issuer: str | None = setting(
        "EMAIL_SERVICE_API_JWT_ISSUER",
        parse_text,
        None,
        "required `iss` of API tokens; unset means not checked",
    )
    jwt_audience: str | None = setting(
        "EMAIL_SERVICE_API_JWT_AUDIENCE",
        parse_text,
        None,
        "required `aud` of API tokens; unset means not checked",
    )
    tenant_claim: str = setting(
        "EMAIL_SERVICE_API_TENANT_CLAIM",
        parse_text,
        "tenant",
        "claim of API tokens that holds the caller's tenant",
    )
    service_tokens: tuple[tuple[str, str], ...] = setting(
        "EMAIL_SERVICE_API_SERVICE_TOKENS",
        parse_service_tokens,
        (),
        "operator tokens for the API as name:token pairs, comma separated; a call with one "
        "names its tenant in the X-Tenant-Id header",
        secret=True,
    )
    cors_origins: tuple[str, ...] = setting(
        "EMAIL_SERVICE_API_CORS_ORIGINS",
        parse_origins,
        (),
        "origins of the tenant UI allowed to call the API from a browser, comma separated",
    )
    max_body_bytes: int = setting(
        "EMAIL_SERVICE_API_MAX_BODY_BYTES",
        parse_int(1024),
        64 * 1024,
        "largest API request body accepted",
    )
    imap_calls_per_minute: int = setting(
        "EMAIL_SERVICE_API_IMAP_CALLS_PER_MINUTE",
        parse_int(1),
        10,
        "API calls that open an IMAP connection (test, folders, live status) one tenant may "
        "make per minute on one API process (bursts up to the same number)",
    )
    content_fetches_per_minute: int = setting(
        "EMAIL_SERVICE_API_CONTENT_FETCHES_PER_MINUTE",
        parse_int(1),
        60,
        "message and part downloads (GET .../messages/...) one tenant may start per minute on "
        "one API process (bursts up to the same number)",
    )
    imap_timeout_s: float = setting(
        "EMAIL_SERVICE_API_IMAP_TIMEOUT_MS",
        parse_int(1000),
        20_000,
        "time bound of an API call that opens an IMAP connection, from resolving the host "
        "to the last answer",
        unit="ms",
    )


@dataclass(frozen=True, repr=False)
class OAuthSettings(Group):
    """OAuth2: the connect flow, token refresh, and the operator's own apps."""

    refresh_margin_s: float = setting(
        "IMAP_OAUTH_REFRESH_MARGIN_MS",
        parse_int(1000),
        300_000,
        "how long before an OAuth access token expires it is refreshed and the connections "
        "using it log in again (at most a quarter of the token's lifetime)",
        unit="ms",
    )
    timeout_s: float = setting(
        "EMAIL_SERVICE_OAUTH_TIMEOUT_MS",
        parse_int(100),
        10_000,
        "time bound of one request to an OAuth token endpoint",
        unit="ms",
    )
    state_secret: str | None = setting(
        "EMAIL_SERVICE_OAUTH_STATE_SECRET",
        parse_jwt_secret,
        None,
        "secret that signs the state of the OAuth connect flow (32 characters or more)",
        secret=True,
    )
    redirect_uris: tuple[str, ...] = setting(
        "EMAIL_SERVICE_OAUTH_REDIRECT_URIS",
        parse_redirect_uris,
        (),
        "redirect URIs the OAuth connect flow may use (registered with the providers), comma "
        "separated; the first is used when a request names none",
    )
    ui_url: str | None = setting(
        "EMAIL_SERVICE_OAUTH_UI_URL",
        parse_http_url,
        None,
        "page of the tenant UI the OAuth callback sends the browser to, with providerId and "
        "status (or error) added; unset means the callback answers JSON",
    )
    google_client_id: str | None = setting(
        "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID",
        parse_text,
        None,
        "OAuth client id of the Google app, for google providers that carry none of their own",
    )
    google_client_secret: str | None = setting(
        "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_SECRET",
        parse_text,
        None,
        "OAuth client secret of the Google app (with EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID)",
        secret=True,
    )
    microsoft_client_id: str | None = setting(
        "EMAIL_SERVICE_OAUTH_MICROSOFT_CLIENT_ID",
        parse_text,
        None,
        "OAuth client id of the Microsoft Entra app, for microsoft providers that carry none",
    )
    microsoft_client_secret: str | None = setting(
        "EMAIL_SERVICE_OAUTH_MICROSOFT_CLIENT_SECRET",
        parse_text,
        None,
        "OAuth client secret of the Microsoft Entra app",
        secret=True,
    )
    microsoft_tenant: str = setting(
        "EMAIL_SERVICE_OAUTH_MICROSOFT_TENANT",
        parse_text,
        "common",
        "Microsoft Entra tenant of the login endpoints: common, organizations, or a tenant id",
    )
