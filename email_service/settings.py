"""Settings read once from the environment at start (core: the environment is passed in).

Every variable the service reads is declared in ``VARIABLES`` below, with its default and
what it means; nothing else in the code reads ``os.environ``. A bad value raises
``InvalidSettings`` naming the variable, what was wrong and what is accepted.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from email_service.errors import InvalidSettings

#: Default stream of the product's event bus (DESIGN.md section 3).
DEFAULT_EVENT_STREAM = "workflow:events:global"
#: Prefix of the default dead-letter stream: ours, not the consumer's ``<stream>:dlq``,
#: which its tools list and re-process (DESIGN.md section 3).
DEAD_LETTER_STREAM_PREFIX = "email-service:dead-letters:"
#: SQLite file in the working directory: the embedded default for a single-node run.
DEFAULT_DATABASE_URL = "sqlite:///email-service.db"


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_int(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if number < minimum:
            raise ValueError(f"expected a whole number of at least {minimum}")
        return number

    return parse


def _parse_fraction(value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError("expected a number between 0 and 1") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError("expected a number between 0 and 1")
    return number


def _parse_keys(value: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in value.split(",") if key.strip())
    if not keys:
        raise ValueError("expected one or more keys separated by commas")
    return keys


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return lowered

    return parse


def _parse_database_url(value: str) -> str:
    url = value.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    raise ValueError("expected a postgresql://user@host:port/dbname or sqlite:///path URL")


def _parse_redis_url(value: str) -> str:
    url = value.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://host:port/db or rediss:// URL")
    return url


def _parse_text(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty value")
    return value.strip()


#: Shortest HS256 secret accepted: RFC 7518 (3.2) asks for a key as long as the hash (256 bits).
MIN_JWT_SECRET_CHARS = 32
#: Shortest service token accepted, so tokens cannot be guessed.
MIN_SERVICE_TOKEN_CHARS = 32


def _parse_jwt_secret(value: str) -> str:
    secret = value.strip()
    if len(secret) < MIN_JWT_SECRET_CHARS:
        raise ValueError(f"expected a random secret of at least {MIN_JWT_SECRET_CHARS} characters")
    return secret


def _parse_pem(value: str) -> str:
    pem = value.strip().replace("\\n", "\n")
    if not pem.startswith("-----BEGIN ") or "-----END " not in pem:
        raise ValueError("expected a PEM public key (-----BEGIN PUBLIC KEY----- ...)")
    return pem + "\n"


def _parse_service_tokens(value: str) -> tuple[tuple[str, str], ...]:
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


def _parse_origins(value: str) -> tuple[str, ...]:
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


def _parse_http_url(value: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.fragment:
        raise ValueError("expected an absolute http(s) URL without a #fragment")
    return url


def _parse_redirect_uris(value: str) -> tuple[str, ...]:
    uris = tuple(_parse_http_url(item) for item in value.split(",") if item.strip())
    if not uris:
        raise ValueError("expected one or more URLs separated by commas")
    return uris


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the attribute it fills, and how to read it."""

    env: str
    attr: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "DATABASE_URL",
        "database_url",
        _parse_database_url,
        DEFAULT_DATABASE_URL,
        "PostgreSQL URL (production) or sqlite:///file (single node)",
        secret=True,
    ),
    Variable(
        "REDIS_URL",
        "redis_url",
        _parse_redis_url,
        None,
        "Redis holding the event stream, e.g. redis://127.0.0.1:6379/0",
        secret=True,
    ),
    Variable(
        "EMAIL_SERVICE_SECRET_KEYS",
        "secret_keys",
        _parse_keys,
        (),
        "Fernet keys, comma separated; the first encrypts, all decrypt "
        "(make one with `email-service keys generate`)",
        secret=True,
    ),
    Variable(
        "EMAIL_SERVICE_EVENT_STREAM",
        "event_stream",
        _parse_text,
        DEFAULT_EVENT_STREAM,
        "Redis stream the events are added to",
    ),
    Variable(
        "EMAIL_SERVICE_DLQ_STREAM",
        "dlq_stream",
        _parse_text,
        None,
        "dead-letter stream of ours; default email-service:dead-letters:<event stream>. "
        "Never <event stream>:dlq, the consumer's own dead-letter stream",
    ),
    Variable(
        "EMAIL_SERVICE_PUBLISHED_MARK_TTL_S",
        "published_mark_ttl_s",
        _parse_int(3600),
        30 * 24 * 3600,
        "how long Redis remembers the highest UID published per folder (idempotency "
        "window between publish and cursor write); refreshed on every publish",
    ),
    Variable(
        "EMAIL_SERVICE_WORKER_ID",
        "worker_id",
        _parse_text,
        None,
        "name of this worker in leases; default <hostname>-<pid>",
    ),
    Variable(
        "EMAIL_SERVICE_HTTP_PORT",
        "http_port",
        _parse_int(0),
        8080,
        "port of /health, /ready and /metrics",
    ),
    Variable(
        "EMAIL_SERVICE_LOG_FORMAT",
        "log_format",
        _parse_choice("text", "json"),
        "text",
        "text or json",
    ),
    Variable(
        "EMAIL_SERVICE_LOG_LEVEL",
        "log_level",
        _parse_choice("debug", "info", "warning", "error"),
        "info",
        "log level",
    ),
    Variable(
        "IMAP_EVENT_CHANNEL_BY_TENANT",
        "event_channel_by_tenant",
        _parse_bool,
        False,
        "execution_id is the tenant id instead of a new UUID",
    ),
    Variable(
        "IMAP_CONNECTION_TIMEOUT_MS",
        "connection_timeout_ms",
        _parse_int(100),
        10_000,
        "TCP connect and per-command timeout",
    ),
    Variable(
        "IMAP_MAX_EMAILS_PER_SYNC",
        "max_emails_per_sync",
        _parse_int(0),
        5,
        "how many of the newest messages a folder with no cursor starts from",
    ),
    Variable(
        "IMAP_SOCKET_KEEPALIVE",
        "socket_keepalive",
        _parse_bool,
        True,
        "TCP keepalive on IMAP sockets, so half-open connections are found",
    ),
    Variable(
        "IMAP_TIMER_JITTER_PCT",
        "timer_jitter_pct",
        _parse_fraction,
        0.1,
        "jitter applied to periodic timers",
    ),
    Variable(
        "IMAP_STARTUP_STAGGER_MS",
        "startup_stagger_ms",
        _parse_int(0),
        2000,
        "listener start-up is spread over this window",
    ),
    Variable(
        "IMAP_RECONNECT_JITTER_PCT",
        "reconnect_jitter_pct",
        _parse_fraction,
        0.5,
        "jitter applied to reconnect backoff",
    ),
    Variable(
        "IMAP_RECONNECT_BASE_MS",
        "reconnect_base_ms",
        _parse_int(10),
        1000,
        "first reconnect delay; doubles on each failure",
    ),
    Variable(
        "IMAP_RECONNECT_MAX_MS",
        "reconnect_max_ms",
        _parse_int(100),
        300_000,
        "upper bound of the reconnect delay",
    ),
    Variable(
        "IMAP_RECONNECT_STABLE_MS",
        "reconnect_stable_ms",
        _parse_int(0),
        120_000,
        "a connection must stay up this long before the backoff resets",
    ),
    Variable(
        "IMAP_LEASE_TTL_MS",
        "lease_ttl_ms",
        _parse_int(3000),
        15_000,
        "how long a provider lease lasts without renewal (database clock); a killed worker's "
        "folders are taken over within about this plus IMAP_PROVIDER_REFRESH_MS",
    ),
    Variable(
        "IMAP_PROVIDER_REFRESH_MS",
        "provider_refresh_ms",
        _parse_int(100),
        5_000,
        "how often the worker looks for new, changed and removed providers, and for leases "
        "that expired",
    ),
    Variable(
        "IMAP_POLL_INTERVAL_MS",
        "poll_interval_ms",
        _parse_int(100),
        15_000,
        "how often a polled folder is checked: servers without IDLE, and folders beyond "
        "the connection budget (checked round-robin with STATUS)",
    ),
    Variable(
        "IMAP_MAX_CONNECTIONS_PER_ACCOUNT",
        "max_connections_per_account",
        _parse_int(1),
        5,
        "most IMAP connections one mailbox account holds at once, unless its provider sets "
        "its own; folders beyond it share one connection polled with STATUS",
    ),
    Variable(
        "IMAP_MAX_CONNECTIONS_PER_TENANT",
        "max_connections_per_tenant",
        _parse_int(1),
        50,
        "most IMAP connections all providers of one tenant hold together, across all "
        "workers; beyond it folders move from IDLE to polling, and when even one connection "
        "per provider is too many, providers take turns on a few shared connections",
    ),
    Variable(
        "EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT",
        "max_providers_per_tenant",
        _parse_int(1),
        500,
        "most providers (mailboxes) one tenant may have; creating one more through the API "
        "or the CLI is refused",
    ),
    Variable(
        "IMAP_IDLE_REISSUE_MS",
        "idle_reissue_ms",
        _parse_int(1000),
        120_000,
        "IDLE is ended, the folder examined again and IDLE re-entered this often: the bound "
        "on finding a silently dead connection (with IMAP_CONNECTION_TIMEOUT_MS) and on "
        "noticing a folder recreated without a sign from the server; RFC 2177 asks < 29 min",
    ),
    Variable(
        "IMAP_FETCH_BATCH_SIZE",
        "fetch_batch_size",
        _parse_int(1),
        50,
        "UIDs fetched, published and committed per batch while catching up",
    ),
    Variable(
        "IMAP_TLS_REJECT_UNAUTHORIZED",
        "tls_reject_unauthorized",
        _parse_bool,
        True,
        "verify IMAP server certificates; false only for tests with throwaway servers",
    ),
    Variable(
        "IMAP_OAUTH_AUTH_MECHANISM",
        "oauth_auth_mechanism",
        _parse_choice("xoauth2", "oauthbearer"),
        None,
        "SASL mechanism for OAuth logins; unset means chosen from CAPABILITY",
    ),
    Variable(
        "IMAP_MAX_ATTACHMENT_BYTES",
        "max_attachment_bytes",
        _parse_int(1),
        10 * 1024 * 1024,
        "largest attachment listed in an event's attachments; larger ones are named in "
        "ingressSkipReasons instead (the old service's name and default)",
    ),
    Variable(
        "IMAP_MAX_TOTAL_ATTACHMENT_BYTES",
        "max_total_attachment_bytes",
        _parse_int(1),
        25 * 1024 * 1024,
        "most attachment bytes listed in one event; attachments past it are named in "
        "ingressSkipReasons instead",
    ),
    Variable(
        "IMAP_MAX_ATTACHMENT_COUNT",
        "max_attachment_count",
        _parse_int(1),
        25,
        "most attachments listed in one event; the rest are named in ingressSkipReasons",
    ),
    Variable(
        "IMAP_MAX_RAW_MIME_BYTES",
        "max_raw_mime_bytes",
        _parse_int(1024),
        25 * 1024 * 1024,
        "largest message downloaded whole (by RFC822.SIZE); a larger one is read from its "
        "headers, BODYSTRUCTURE and capped text parts. Bounds the worker's memory: parsing "
        "takes about 4 times the message",
    ),
    Variable(
        "IMAP_MAX_HEADER_BYTES",
        "max_header_bytes",
        _parse_int(1024),
        64 * 1024,
        "most bytes of header fields (names and values) in an event's headers",
    ),
    Variable(
        "IMAP_MAX_BODY_TEXT_BYTES",
        "max_body_text_bytes",
        _parse_int(1024),
        256 * 1024,
        "most bytes of body.text, and of body.html, in an event",
    ),
    Variable(
        "EMAIL_SERVICE_MAX_EVENT_BYTES",
        "max_event_bytes",
        _parse_int(4096),
        1024 * 1024,
        "most bytes of one stream entry (field names and values); a larger event loses its "
        "HTML, then text, headers, recipients and attachment list, or becomes a dead letter",
    ),
    Variable(
        "IMAP_INLINE_CONTENT",
        "inline_content",
        _parse_choice("off", "attachments", "all"),
        "attachments",
        "what goes inline in an event: off (metadata only), attachments (each listed "
        "attachment's bytes as base64 content) or all (also the whole message as "
        "rawMimeBase64), while the entry fits EMAIL_SERVICE_MAX_EVENT_BYTES; the rest is "
        "fetched through the API (contentLocation)",
    ),
    Variable(
        "EMAIL_SERVICE_BACKLOG_HIGH_ENTRIES",
        "backlog_high_entries",
        _parse_int(1),
        50_000,
        "unread or unacknowledged entries of the event stream's busiest consumer group above "
        "which workers stop catching up (cursors stay; nothing is lost or trimmed)",
    ),
    Variable(
        "EMAIL_SERVICE_BACKLOG_LOW_ENTRIES",
        "backlog_low_entries",
        _parse_int(0),
        25_000,
        "backlog below which paused workers resume (with the memory low mark)",
    ),
    Variable(
        "EMAIL_SERVICE_REDIS_MEMORY_HIGH_BYTES",
        "redis_memory_high_bytes",
        _parse_int(1),
        1024 * 1024 * 1024,
        "Redis used_memory above which workers stop catching up",
    ),
    Variable(
        "EMAIL_SERVICE_REDIS_MEMORY_LOW_BYTES",
        "redis_memory_low_bytes",
        _parse_int(0),
        768 * 1024 * 1024,
        "Redis used_memory below which paused workers resume (with the backlog low mark)",
    ),
    Variable(
        "EMAIL_SERVICE_DLQ_MAX_RAW_BYTES",
        "dlq_max_raw_bytes",
        _parse_int(0),
        256 * 1024,
        "largest raw message kept inside a dead-letter entry; larger ones are fetched again "
        "by UID when replayed",
    ),
    Variable(
        "EMAIL_SERVICE_HTTP_MAX_CONNECTIONS",
        "http_max_connections",
        _parse_int(16),
        2000,
        "most open HTTP connections of one server (the API, or a worker's /health server); "
        "more are closed at once. Lowered to what the open-file limit allows",
    ),
    Variable(
        "EMAIL_SERVICE_HTTP_MAX_CONNECTIONS_PER_IP",
        "http_max_connections_per_ip",
        _parse_int(0),
        200,
        "most open HTTP connections from one client address (0: no limit); behind a proxy or "
        "a sidecar every client has the proxy's address, so raise it or set 0 there",
    ),
    Variable(
        "EMAIL_SERVICE_API_PORT",
        "api_port",
        _parse_int(0),
        8081,
        "port of `email-service api`: the provider API, /health, /ready and /metrics",
    ),
    Variable(
        "EMAIL_SERVICE_API_JWT_ALGORITHM",
        "api_jwt_algorithm",
        _parse_choice("hs256", "rs256"),
        "hs256",
        "how API bearer tokens are signed: hs256 (shared secret) or rs256 (public key)",
    ),
    Variable(
        "EMAIL_SERVICE_API_JWT_SECRET",
        "api_jwt_secret",
        _parse_jwt_secret,
        None,
        "shared secret that HS256 API tokens are signed with (32 characters or more)",
        secret=True,
    ),
    Variable(
        "EMAIL_SERVICE_API_JWT_PUBLIC_KEY",
        "api_jwt_public_key",
        _parse_pem,
        None,
        "PEM public key that RS256 API tokens are checked with (\\n escapes allowed)",
    ),
    Variable(
        "EMAIL_SERVICE_API_JWT_ISSUER",
        "api_jwt_issuer",
        _parse_text,
        None,
        "required `iss` of API tokens; unset means not checked",
    ),
    Variable(
        "EMAIL_SERVICE_API_JWT_AUDIENCE",
        "api_jwt_audience",
        _parse_text,
        None,
        "required `aud` of API tokens; unset means not checked",
    ),
    Variable(
        "EMAIL_SERVICE_API_TENANT_CLAIM",
        "api_tenant_claim",
        _parse_text,
        "tenant",
        "claim of API tokens that holds the caller's tenant",
    ),
    Variable(
        "EMAIL_SERVICE_API_SERVICE_TOKENS",
        "api_service_tokens",
        _parse_service_tokens,
        (),
        "operator tokens for the API as name:token pairs, comma separated; a call with one "
        "names its tenant in the X-Tenant-Id header",
        secret=True,
    ),
    Variable(
        "EMAIL_SERVICE_API_CORS_ORIGINS",
        "api_cors_origins",
        _parse_origins,
        (),
        "origins of the tenant UI allowed to call the API from a browser, comma separated",
    ),
    Variable(
        "EMAIL_SERVICE_API_MAX_BODY_BYTES",
        "api_max_body_bytes",
        _parse_int(1024),
        64 * 1024,
        "largest API request body accepted",
    ),
    Variable(
        "EMAIL_SERVICE_API_IMAP_CALLS_PER_MINUTE",
        "api_imap_calls_per_minute",
        _parse_int(1),
        10,
        "API calls that open an IMAP connection (test, folders, live status) one tenant may "
        "make per minute on one API process (bursts up to the same number)",
    ),
    Variable(
        "EMAIL_SERVICE_API_CONTENT_FETCHES_PER_MINUTE",
        "api_content_fetches_per_minute",
        _parse_int(1),
        60,
        "message and part downloads (GET .../messages/...) one tenant may start per minute on "
        "one API process (bursts up to the same number)",
    ),
    Variable(
        "EMAIL_SERVICE_API_IMAP_TIMEOUT_MS",
        "api_imap_timeout_ms",
        _parse_int(1000),
        20_000,
        "time bound of an API call that opens an IMAP connection, from resolving the host "
        "to the last answer",
    ),
    Variable(
        "EMAIL_SERVICE_PARSE_PROCESSES",
        "parse_processes",
        _parse_int(0),
        2,
        "processes that parse fetched mail next to the worker, so fetching and parsing a "
        "backlog overlap on other cores (about 45 MB each, started on first use); 0 parses "
        "on the listener threads",
    ),
    Variable(
        "IMAP_OAUTH_REFRESH_MARGIN_MS",
        "oauth_refresh_margin_ms",
        _parse_int(1000),
        300_000,
        "how long before an OAuth access token expires it is refreshed and the connections "
        "using it log in again (at most a quarter of the token's lifetime)",
    ),
    Variable(
        "EMAIL_SERVICE_OAUTH_TIMEOUT_MS",
        "oauth_timeout_ms",
        _parse_int(100),
        10_000,
        "time bound of one request to an OAuth token endpoint",
    ),
    Variable(
        "EMAIL_SERVICE_OAUTH_STATE_SECRET",
        "oauth_state_secret",
        _parse_jwt_secret,
        None,
        "secret that signs the state of the OAuth connect flow (32 characters or more)",
        secret=True,
    ),
    Variable(
        "EMAIL_SERVICE_OAUTH_REDIRECT_URIS",
        "oauth_redirect_uris",
        _parse_redirect_uris,
        (),
        "redirect URIs the OAuth connect flow may use (registered with the providers), comma "
        "separated; the first is used when a request names none",
    ),
    Variable(
        "EMAIL_SERVICE_OAUTH_UI_URL",
        "oauth_ui_url",
        _parse_http_url,
        None,
        "page of the tenant UI the OAuth callback sends the browser to, with providerId and "
        "status (or error) added; unset means the callback answers JSON",
    ),
    Variable(
        "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID",
        "oauth_google_client_id",
        _parse_text,
        None,
        "OAuth client id of the Google app, for google providers that carry none of their own",
    ),
    Variable(
        "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_SECRET",
        "oauth_google_client_secret",
        _parse_text,
        None,
        "OAuth client secret of the Google app (with EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID)",
        secret=True,
    ),
    Variable(
        "EMAIL_SERVICE_OAUTH_MICROSOFT_CLIENT_ID",
        "oauth_microsoft_client_id",
        _parse_text,
        None,
        "OAuth client id of the Microsoft Entra app, for microsoft providers that carry none",
    ),
    Variable(
        "EMAIL_SERVICE_OAUTH_MICROSOFT_CLIENT_SECRET",
        "oauth_microsoft_client_secret",
        _parse_text,
        None,
        "OAuth client secret of the Microsoft Entra app",
        secret=True,
    ),
    Variable(
        "EMAIL_SERVICE_OAUTH_MICROSOFT_TENANT",
        "oauth_microsoft_tenant",
        _parse_text,
        "common",
        "Microsoft Entra tenant of the login endpoints: common, organizations, or a tenant id",
    ),
    Variable(
        "IMAP_ALLOW_PRIVATE_HOSTS",
        "allow_private_hosts",
        _parse_bool,
        False,
        "allow tenants' hosts (IMAP servers, OAuth token endpoints) that resolve to private, "
        "loopback or link-local addresses (refused by default against server-side request "
        "forgery, at every connection)",
    ),
)


def _env_of(attr: str) -> str:
    return next(variable.env for variable in VARIABLES if variable.attr == attr)


@dataclass(frozen=True)
class Settings:
    """All settings of one process. Build with ``Settings.from_env(os.environ)``."""

    database_url: str
    redis_url: str | None
    secret_keys: tuple[str, ...]
    event_stream: str
    dlq_stream: str
    published_mark_ttl_s: int
    worker_id: str
    http_port: int
    log_format: str
    log_level: str
    event_channel_by_tenant: bool
    connection_timeout_ms: int
    max_emails_per_sync: int
    socket_keepalive: bool
    timer_jitter_pct: float
    startup_stagger_ms: int
    reconnect_jitter_pct: float
    reconnect_base_ms: int
    reconnect_max_ms: int
    reconnect_stable_ms: int
    lease_ttl_ms: int
    provider_refresh_ms: int
    poll_interval_ms: int
    max_connections_per_account: int
    max_connections_per_tenant: int
    max_providers_per_tenant: int
    idle_reissue_ms: int
    fetch_batch_size: int
    tls_reject_unauthorized: bool
    oauth_auth_mechanism: str | None
    max_attachment_bytes: int
    max_total_attachment_bytes: int
    max_attachment_count: int
    max_raw_mime_bytes: int
    max_header_bytes: int
    max_body_text_bytes: int
    max_event_bytes: int
    inline_content: str
    backlog_high_entries: int
    backlog_low_entries: int
    redis_memory_high_bytes: int
    redis_memory_low_bytes: int
    dlq_max_raw_bytes: int
    http_max_connections: int
    http_max_connections_per_ip: int

    api_port: int
    api_jwt_algorithm: str
    api_jwt_secret: str | None
    api_jwt_public_key: str | None
    api_jwt_issuer: str | None
    api_jwt_audience: str | None
    api_tenant_claim: str
    api_service_tokens: tuple[tuple[str, str], ...]
    api_cors_origins: tuple[str, ...]
    api_max_body_bytes: int
    api_imap_calls_per_minute: int
    api_content_fetches_per_minute: int
    api_imap_timeout_ms: int
    allow_private_hosts: bool
    parse_processes: int
    oauth_refresh_margin_ms: int
    oauth_timeout_ms: int
    oauth_state_secret: str | None
    oauth_redirect_uris: tuple[str, ...]
    oauth_ui_url: str | None
    oauth_google_client_id: str | None
    oauth_google_client_secret: str | None
    oauth_microsoft_client_id: str | None
    oauth_microsoft_client_secret: str | None
    oauth_microsoft_tenant: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, default_worker_id: str = "") -> Settings:
        """Read every variable of ``VARIABLES``; raise ``InvalidSettings`` on the first bad one."""
        values: dict[str, Any] = {}
        for variable in VARIABLES:
            raw = environ.get(variable.env)
            if raw is None or raw.strip() == "":
                values[variable.attr] = variable.default
                continue
            try:
                values[variable.attr] = variable.parse(raw)
            except ValueError as exc:
                shown = "(hidden)" if variable.secret else repr(raw)
                raise InvalidSettings(
                    f"{variable.env}={shown} is not valid: {exc}. "
                    f"{variable.env} is the {variable.help}."
                ) from None
        if values["dlq_stream"] is None:
            values["dlq_stream"] = DEAD_LETTER_STREAM_PREFIX + values["event_stream"]
        if values["dlq_stream"] in (values["event_stream"], f"{values['event_stream']}:dlq"):
            raise InvalidSettings(
                f"EMAIL_SERVICE_DLQ_STREAM={values['dlq_stream']!r} is not valid: that stream "
                "belongs to the product's consumer (its events, or its own dead letters, which "
                "its tools list and re-process). Leave EMAIL_SERVICE_DLQ_STREAM unset for "
                f"{DEAD_LETTER_STREAM_PREFIX}<event stream>, or name a stream of our own; "
                "`email-service dlq move --from STREAM` moves old dead letters of ours over."
            )
        if values["worker_id"] is None:
            values["worker_id"] = default_worker_id or socket.gethostname()
        for low, high in (
            ("backlog_low_entries", "backlog_high_entries"),
            ("redis_memory_low_bytes", "redis_memory_high_bytes"),
        ):
            if values[low] >= values[high]:
                raise InvalidSettings(
                    f"{_env_of(low)} must be below {_env_of(high)} "
                    f"({values[low]} >= {values[high]}): the gap between them keeps workers "
                    "from pausing and resuming on every entry."
                )
        if values["reconnect_max_ms"] < values["reconnect_base_ms"]:
            raise InvalidSettings(
                "IMAP_RECONNECT_MAX_MS must be at least IMAP_RECONNECT_BASE_MS "
                f"({values['reconnect_max_ms']} < {values['reconnect_base_ms']})."
            )
        return cls(**values)

    def require_redis_url(self) -> str:
        """The Redis URL, or ``InvalidSettings`` saying how to set it."""
        if self.redis_url is None:
            raise InvalidSettings(
                "REDIS_URL is not set: set it to the Redis that holds the event stream, "
                "e.g. REDIS_URL=redis://127.0.0.1:6379/0"
            )
        return self.redis_url

    def require_secret_keys(self) -> tuple[str, ...]:
        """The secret keys, or ``InvalidSettings`` saying how to make one."""
        if not self.secret_keys:
            raise InvalidSettings(
                "EMAIL_SERVICE_SECRET_KEYS is not set: it encrypts mailbox passwords and "
                "tokens. Make a key with `email-service keys generate` and set "
                "EMAIL_SERVICE_SECRET_KEYS=<key> (several keys, comma separated, to rotate)."
            )
        return self.secret_keys

    def require_api_jwt_key(self) -> str:
        """The key API tokens are checked with, or ``InvalidSettings`` naming the variable."""
        if self.api_jwt_algorithm == "hs256":
            if self.api_jwt_secret is None:
                raise InvalidSettings(
                    "EMAIL_SERVICE_API_JWT_SECRET is not set: `email-service api` checks bearer "
                    "tokens signed with HS256 against it. Set it to the secret the tenant UI "
                    "signs with (32 characters or more), or set "
                    "EMAIL_SERVICE_API_JWT_ALGORITHM=rs256 and EMAIL_SERVICE_API_JWT_PUBLIC_KEY."
                )
            return self.api_jwt_secret
        if self.api_jwt_public_key is None:
            raise InvalidSettings(
                "EMAIL_SERVICE_API_JWT_PUBLIC_KEY is not set: with "
                "EMAIL_SERVICE_API_JWT_ALGORITHM=rs256, `email-service api` checks bearer tokens "
                "against it. Set it to the PEM public key of the token issuer."
            )
        return self.api_jwt_public_key

    def __repr__(self) -> str:
        secret_attrs = {v.attr for v in VARIABLES if v.secret}
        shown = ", ".join(
            f"{f.name}=<redacted>"
            if f.name in secret_attrs
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
        )
        return f"Settings({shown})"
