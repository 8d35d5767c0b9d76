"""Settings read once from the environment at start (core: the environment is passed in).

Settings come in groups by role (``StoreSettings``, ``StreamSettings``, ``ImapSettings``,
``IngressLimits``, ``ApiSettings``, ...), and each field is declared once, in its group:
its environment variable, how the text is read, its default, its unit and what it means
(``setting``). A duration is given in milliseconds, as the variables always were, and kept
in seconds (``..._s``): converted here, once. ``Settings`` holds one of each group; a
component is handed the groups it needs. ``VARIABLES`` lists every variable (docs, chart
and compose tests read it); nothing else in the code reads ``os.environ``. A bad value
raises ``InvalidSettings`` naming the variable, what was wrong and what is accepted.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


#: Milliseconds in a second: durations are given in ms and kept in seconds.
MS_PER_S = 1000


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the field it fills (``group.field``), how to
    read it, its default (as the variable would give it), and what it means."""

    env: str
    attr: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False
    unit: str = ""

    def value_of(self, raw: Any) -> Any:
        """The field's value for what ``parse`` read (milliseconds become seconds)."""
        if self.unit == "ms" and raw is not None:
            return raw / MS_PER_S
        return raw


def setting(
    env: str,
    parse: Callable[[str], Any],
    default: Any,
    help: str,
    *,
    secret: bool = False,
    unit: str = "",
) -> Any:
    """A group's field, declared with its variable (see ``Variable``)."""
    variable = Variable(env, "", parse, default, help, secret, unit)
    return field(default=variable.value_of(default), metadata={"variable": variable})


class _Group:
    """A group of settings; its ``repr`` hides the secret ones."""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}=<redacted>"
            if f.metadata["variable"].secret
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        )
        return f"{type(self).__name__}({shown})"


@dataclass(frozen=True, repr=False)
class StoreSettings(_Group):
    """Where providers, cursors and leases live, and the keys that seal their secrets."""

    database_url: str = setting(
        "DATABASE_URL",
        _parse_database_url,
        DEFAULT_DATABASE_URL,
        "PostgreSQL URL (production) or sqlite:///file (single node)",
        secret=True,
    )
    secret_keys: tuple[str, ...] = setting(
        "EMAIL_SERVICE_SECRET_KEYS",
        _parse_keys,
        (),
        "Fernet keys, comma separated; the first encrypts, all decrypt "
        "(make one with `email-service keys generate`)",
        secret=True,
    )
    max_providers_per_tenant: int = setting(
        "EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT",
        _parse_int(1),
        500,
        "most providers (mailboxes) one tenant may have; creating one more through the API "
        "or the CLI is refused",
    )


@dataclass(frozen=True, repr=False)
class StreamSettings(_Group):
    """The Redis event stream, our dead letters, and when publishing waits (water marks)."""

    redis_url: str | None = setting(
        "REDIS_URL",
        _parse_redis_url,
        None,
        "Redis holding the event stream, e.g. redis://127.0.0.1:6379/0",
        secret=True,
    )
    event_stream: str = setting(
        "EMAIL_SERVICE_EVENT_STREAM",
        _parse_text,
        DEFAULT_EVENT_STREAM,
        "Redis stream the events are added to",
    )
    dlq_stream: str = setting(
        "EMAIL_SERVICE_DLQ_STREAM",
        _parse_text,
        None,
        "dead-letter stream of ours; default email-service:dead-letters:<event stream>. "
        "Never <event stream>:dlq, the consumer's own dead-letter stream",
    )
    published_mark_ttl_s: int = setting(
        "EMAIL_SERVICE_PUBLISHED_MARK_TTL_S",
        _parse_int(3600),
        30 * 24 * 3600,
        "how long Redis remembers the highest UID published per folder (idempotency "
        "window between publish and cursor write); refreshed on every publish",
    )
    event_channel_by_tenant: bool = setting(
        "IMAP_EVENT_CHANNEL_BY_TENANT",
        _parse_bool,
        False,
        "execution_id is the tenant id instead of a new UUID",
    )
    backlog_high_entries: int = setting(
        "EMAIL_SERVICE_BACKLOG_HIGH_ENTRIES",
        _parse_int(1),
        50_000,
        "unread or unacknowledged entries of the event stream's busiest consumer group above "
        "which workers stop catching up (cursors stay; nothing is lost or trimmed)",
    )
    backlog_low_entries: int = setting(
        "EMAIL_SERVICE_BACKLOG_LOW_ENTRIES",
        _parse_int(0),
        25_000,
        "backlog below which paused workers resume (with the memory low mark)",
    )
    redis_memory_high_bytes: int = setting(
        "EMAIL_SERVICE_REDIS_MEMORY_HIGH_BYTES",
        _parse_int(1),
        1024 * 1024 * 1024,
        "Redis used_memory above which workers stop catching up",
    )
    redis_memory_low_bytes: int = setting(
        "EMAIL_SERVICE_REDIS_MEMORY_LOW_BYTES",
        _parse_int(0),
        768 * 1024 * 1024,
        "Redis used_memory below which paused workers resume (with the backlog low mark)",
    )


@dataclass(frozen=True, repr=False)
class ProcessSettings(_Group):
    """The process itself: its name in leases, HTTP port and limits, logging, parse processes."""

    worker_id: str = setting(
        "EMAIL_SERVICE_WORKER_ID",
        _parse_text,
        None,
        "name of this worker in leases; default <hostname>-<pid>",
    )
    http_port: int = setting(
        "EMAIL_SERVICE_HTTP_PORT",
        _parse_int(0),
        8080,
        "port of /health, /ready and /metrics",
    )
    log_format: str = setting(
        "EMAIL_SERVICE_LOG_FORMAT",
        _parse_choice("text", "json"),
        "text",
        "text or json",
    )
    log_level: str = setting(
        "EMAIL_SERVICE_LOG_LEVEL",
        _parse_choice("debug", "info", "warning", "error"),
        "info",
        "log level",
    )
    http_max_connections: int = setting(
        "EMAIL_SERVICE_HTTP_MAX_CONNECTIONS",
        _parse_int(16),
        2000,
        "most open HTTP connections of one server (the API, or a worker's /health server); "
        "more are closed at once. Lowered to what the open-file limit allows",
    )
    http_max_connections_per_ip: int = setting(
        "EMAIL_SERVICE_HTTP_MAX_CONNECTIONS_PER_IP",
        _parse_int(0),
        200,
        "most open HTTP connections from one client address (0: no limit); behind a proxy or "
        "a sidecar every client has the proxy's address, so raise it or set 0 there",
    )
    parse_processes: int = setting(
        "EMAIL_SERVICE_PARSE_PROCESSES",
        _parse_int(0),
        2,
        "processes that parse fetched mail next to the worker, so fetching and parsing a "
        "backlog overlap on other cores (about 45 MB each, started on first use); 0 parses "
        "on the listener threads",
    )


@dataclass(frozen=True, repr=False)
class ImapSettings(_Group):
    """How the worker and the API talk to mail servers."""

    connection_timeout_s: float = setting(
        "IMAP_CONNECTION_TIMEOUT_MS",
        _parse_int(100),
        10_000,
        "TCP connect and per-command timeout",
        unit="ms",
    )
    max_emails_per_sync: int = setting(
        "IMAP_MAX_EMAILS_PER_SYNC",
        _parse_int(0),
        5,
        "how many of the newest messages a folder with no cursor starts from",
    )
    socket_keepalive: bool = setting(
        "IMAP_SOCKET_KEEPALIVE",
        _parse_bool,
        True,
        "TCP keepalive on IMAP sockets, so half-open connections are found",
    )
    poll_interval_s: float = setting(
        "IMAP_POLL_INTERVAL_MS",
        _parse_int(100),
        15_000,
        "how often a polled folder is checked: servers without IDLE, and folders beyond "
        "the connection budget (checked round-robin with STATUS)",
        unit="ms",
    )
    max_connections_per_account: int = setting(
        "IMAP_MAX_CONNECTIONS_PER_ACCOUNT",
        _parse_int(1),
        5,
        "most IMAP connections one mailbox account holds at once, unless its provider sets "
        "its own; folders beyond it share one connection polled with STATUS",
    )
    max_connections_per_tenant: int = setting(
        "IMAP_MAX_CONNECTIONS_PER_TENANT",
        _parse_int(1),
        50,
        "most IMAP connections all providers of one tenant hold together, across all "
        "workers; beyond it folders move from IDLE to polling, and when even one connection "
        "per provider is too many, providers take turns on a few shared connections",
    )
    idle_reissue_s: float = setting(
        "IMAP_IDLE_REISSUE_MS",
        _parse_int(1000),
        120_000,
        "IDLE is ended, the folder examined again and IDLE re-entered this often: the bound "
        "on finding a silently dead connection (with IMAP_CONNECTION_TIMEOUT_MS) and on "
        "noticing a folder recreated without a sign from the server; RFC 2177 asks < 29 min",
        unit="ms",
    )
    tls_reject_unauthorized: bool = setting(
        "IMAP_TLS_REJECT_UNAUTHORIZED",
        _parse_bool,
        True,
        "verify IMAP server certificates; false only for tests with throwaway servers",
    )
    oauth_auth_mechanism: str | None = setting(
        "IMAP_OAUTH_AUTH_MECHANISM",
        _parse_choice("xoauth2", "oauthbearer"),
        None,
        "SASL mechanism for OAuth logins; unset means chosen from CAPABILITY",
    )
    allow_private_hosts: bool = setting(
        "IMAP_ALLOW_PRIVATE_HOSTS",
        _parse_bool,
        False,
        "allow tenants' hosts (IMAP servers, OAuth token endpoints) that resolve to private, "
        "loopback or link-local addresses (refused by default against server-side request "
        "forgery, at every connection)",
    )


@dataclass(frozen=True, repr=False)
class ReconnectSettings(_Group):
    """Timers: start-up stagger, reconnect backoff, jitter."""

    timer_jitter_pct: float = setting(
        "IMAP_TIMER_JITTER_PCT",
        _parse_fraction,
        0.1,
        "jitter applied to periodic timers",
    )
    startup_stagger_s: float = setting(
        "IMAP_STARTUP_STAGGER_MS",
        _parse_int(0),
        2000,
        "listener start-up is spread over this window",
        unit="ms",
    )
    jitter_pct: float = setting(
        "IMAP_RECONNECT_JITTER_PCT",
        _parse_fraction,
        0.5,
        "jitter applied to reconnect backoff",
    )
    base_s: float = setting(
        "IMAP_RECONNECT_BASE_MS",
        _parse_int(10),
        1000,
        "first reconnect delay; doubles on each failure",
        unit="ms",
    )
    max_s: float = setting(
        "IMAP_RECONNECT_MAX_MS",
        _parse_int(100),
        300_000,
        "upper bound of the reconnect delay",
        unit="ms",
    )
    stable_s: float = setting(
        "IMAP_RECONNECT_STABLE_MS",
        _parse_int(0),
        120_000,
        "a connection must stay up this long before the backoff resets",
        unit="ms",
    )


@dataclass(frozen=True, repr=False)
class LeaseSettings(_Group):
    """Provider leases between workers."""

    lease_ttl_s: float = setting(
        "IMAP_LEASE_TTL_MS",
        _parse_int(3000),
        15_000,
        "how long a provider lease lasts without renewal (database clock); a killed worker's "
        "folders are taken over within about this plus IMAP_PROVIDER_REFRESH_MS",
        unit="ms",
    )
    provider_refresh_s: float = setting(
        "IMAP_PROVIDER_REFRESH_MS",
        _parse_int(100),
        5_000,
        "how often the worker looks for new, changed and removed providers, and for leases "
        "that expired",
        unit="ms",
    )


@dataclass(frozen=True, repr=False)
class IngressLimits(_Group):
    """The caps of fetching and of one event (fetch planning, event caps, publish chunking)."""

    fetch_batch_size: int = setting(
        "IMAP_FETCH_BATCH_SIZE",
        _parse_int(1),
        50,
        "UIDs fetched, published and committed per batch while catching up",
    )
    max_attachment_bytes: int = setting(
        "IMAP_MAX_ATTACHMENT_BYTES",
        _parse_int(1),
        10 * 1024 * 1024,
        "largest attachment listed in an event's attachments; larger ones are named in "
        "ingressSkipReasons instead (the old service's name and default)",
    )
    max_total_attachment_bytes: int = setting(
        "IMAP_MAX_TOTAL_ATTACHMENT_BYTES",
        _parse_int(1),
        25 * 1024 * 1024,
        "most attachment bytes listed in one event; attachments past it are named in "
        "ingressSkipReasons instead",
    )
    max_attachment_count: int = setting(
        "IMAP_MAX_ATTACHMENT_COUNT",
        _parse_int(1),
        25,
        "most attachments listed in one event; the rest are named in ingressSkipReasons",
    )
    max_raw_mime_bytes: int = setting(
        "IMAP_MAX_RAW_MIME_BYTES",
        _parse_int(1024),
        25 * 1024 * 1024,
        "largest message downloaded whole (by RFC822.SIZE); a larger one is read from its "
        "headers, BODYSTRUCTURE and capped text parts. Bounds the worker's memory: parsing "
        "takes about 4 times the message",
    )
    max_header_bytes: int = setting(
        "IMAP_MAX_HEADER_BYTES",
        _parse_int(1024),
        64 * 1024,
        "most bytes of header fields (names and values) in an event's headers",
    )
    max_body_text_bytes: int = setting(
        "IMAP_MAX_BODY_TEXT_BYTES",
        _parse_int(1024),
        256 * 1024,
        "most bytes of body.text, and of body.html, in an event",
    )
    max_event_bytes: int = setting(
        "EMAIL_SERVICE_MAX_EVENT_BYTES",
        _parse_int(4096),
        1024 * 1024,
        "most bytes of one stream entry (field names and values); a larger event loses its "
        "HTML, then text, headers, recipients and attachment list, or becomes a dead letter",
    )
    inline_content: str = setting(
        "IMAP_INLINE_CONTENT",
        _parse_choice("off", "attachments", "all"),
        "attachments",
        "what goes inline in an event: off (metadata only), attachments (each listed "
        "attachment's bytes as base64 content) or all (also the whole message as "
        "rawMimeBase64), while the entry fits EMAIL_SERVICE_MAX_EVENT_BYTES; the rest is "
        "fetched through the API (contentLocation)",
    )
    dead_letter_raw_bytes: int = setting(
        "EMAIL_SERVICE_DLQ_MAX_RAW_BYTES",
        _parse_int(0),
        256 * 1024,
        "largest raw message kept inside a dead-letter entry; larger ones are fetched again "
        "by UID when replayed",
    )


@dataclass(frozen=True, repr=False)
class ApiSettings(_Group):
    """The tenant HTTP API: tokens, CORS, bodies, its calls to mail servers."""

    port: int = setting(
        "EMAIL_SERVICE_API_PORT",
        _parse_int(0),
        8081,
        "port of `email-service api`: the provider API, /health, /ready and /metrics",
    )
    jwt_algorithm: str = setting(
        "EMAIL_SERVICE_API_JWT_ALGORITHM",
        _parse_choice("hs256", "rs256"),
        "hs256",
        "how API bearer tokens are signed: hs256 (shared secret) or rs256 (public key)",
    )
    jwt_secret: str | None = setting(
        "EMAIL_SERVICE_API_JWT_SECRET",
        _parse_jwt_secret,
        None,
        "shared secret that HS256 API tokens are signed with (32 characters or more)",
        secret=True,
    )
    jwt_public_key: str | None = setting(
        "EMAIL_SERVICE_API_JWT_PUBLIC_KEY",
        _parse_pem,
        None,
        "PEM public key that RS256 API tokens are checked with (\\n escapes allowed)",
    )
    jwt_issuer: str | None = setting(
        "EMAIL_SERVICE_API_JWT_ISSUER",
        _parse_text,
        None,
        "required `iss` of API tokens; unset means not checked",
    )
    jwt_audience: str | None = setting(
        "EMAIL_SERVICE_API_JWT_AUDIENCE",
        _parse_text,
        None,
        "required `aud` of API tokens; unset means not checked",
    )
    tenant_claim: str = setting(
        "EMAIL_SERVICE_API_TENANT_CLAIM",
        _parse_text,
        "tenant",
        "claim of API tokens that holds the caller's tenant",
    )
    service_tokens: tuple[tuple[str, str], ...] = setting(
        "EMAIL_SERVICE_API_SERVICE_TOKENS",
        _parse_service_tokens,
        (),
        "operator tokens for the API as name:token pairs, comma separated; a call with one "
        "names its tenant in the X-Tenant-Id header",
        secret=True,
    )
    cors_origins: tuple[str, ...] = setting(
        "EMAIL_SERVICE_API_CORS_ORIGINS",
        _parse_origins,
        (),
        "origins of the tenant UI allowed to call the API from a browser, comma separated",
    )
    max_body_bytes: int = setting(
        "EMAIL_SERVICE_API_MAX_BODY_BYTES",
        _parse_int(1024),
        64 * 1024,
        "largest API request body accepted",
    )
    imap_calls_per_minute: int = setting(
        "EMAIL_SERVICE_API_IMAP_CALLS_PER_MINUTE",
        _parse_int(1),
        10,
        "API calls that open an IMAP connection (test, folders, live status) one tenant may "
        "make per minute on one API process (bursts up to the same number)",
    )
    content_fetches_per_minute: int = setting(
        "EMAIL_SERVICE_API_CONTENT_FETCHES_PER_MINUTE",
        _parse_int(1),
        60,
        "message and part downloads (GET .../messages/...) one tenant may start per minute on "
        "one API process (bursts up to the same number)",
    )
    imap_timeout_s: float = setting(
        "EMAIL_SERVICE_API_IMAP_TIMEOUT_MS",
        _parse_int(1000),
        20_000,
        "time bound of an API call that opens an IMAP connection, from resolving the host "
        "to the last answer",
        unit="ms",
    )


@dataclass(frozen=True, repr=False)
class OAuthSettings(_Group):
    """OAuth2: the connect flow, token refresh, and the operator's own apps."""

    refresh_margin_s: float = setting(
        "IMAP_OAUTH_REFRESH_MARGIN_MS",
        _parse_int(1000),
        300_000,
        "how long before an OAuth access token expires it is refreshed and the connections "
        "using it log in again (at most a quarter of the token's lifetime)",
        unit="ms",
    )
    timeout_s: float = setting(
        "EMAIL_SERVICE_OAUTH_TIMEOUT_MS",
        _parse_int(100),
        10_000,
        "time bound of one request to an OAuth token endpoint",
        unit="ms",
    )
    state_secret: str | None = setting(
        "EMAIL_SERVICE_OAUTH_STATE_SECRET",
        _parse_jwt_secret,
        None,
        "secret that signs the state of the OAuth connect flow (32 characters or more)",
        secret=True,
    )
    redirect_uris: tuple[str, ...] = setting(
        "EMAIL_SERVICE_OAUTH_REDIRECT_URIS",
        _parse_redirect_uris,
        (),
        "redirect URIs the OAuth connect flow may use (registered with the providers), comma "
        "separated; the first is used when a request names none",
    )
    ui_url: str | None = setting(
        "EMAIL_SERVICE_OAUTH_UI_URL",
        _parse_http_url,
        None,
        "page of the tenant UI the OAuth callback sends the browser to, with providerId and "
        "status (or error) added; unset means the callback answers JSON",
    )
    google_client_id: str | None = setting(
        "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID",
        _parse_text,
        None,
        "OAuth client id of the Google app, for google providers that carry none of their own",
    )
    google_client_secret: str | None = setting(
        "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_SECRET",
        _parse_text,
        None,
        "OAuth client secret of the Google app (with EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID)",
        secret=True,
    )
    microsoft_client_id: str | None = setting(
        "EMAIL_SERVICE_OAUTH_MICROSOFT_CLIENT_ID",
        _parse_text,
        None,
        "OAuth client id of the Microsoft Entra app, for microsoft providers that carry none",
    )
    microsoft_client_secret: str | None = setting(
        "EMAIL_SERVICE_OAUTH_MICROSOFT_CLIENT_SECRET",
        _parse_text,
        None,
        "OAuth client secret of the Microsoft Entra app",
        secret=True,
    )
    microsoft_tenant: str = setting(
        "EMAIL_SERVICE_OAUTH_MICROSOFT_TENANT",
        _parse_text,
        "common",
        "Microsoft Entra tenant of the login endpoints: common, organizations, or a tenant id",
    )


@dataclass(frozen=True)
class Settings:
    """All settings of one process, by role. Build with ``Settings.from_env(os.environ)``."""

    store: StoreSettings = field(default_factory=StoreSettings)
    streams: StreamSettings = field(default_factory=StreamSettings)
    process: ProcessSettings = field(default_factory=ProcessSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    reconnect: ReconnectSettings = field(default_factory=ReconnectSettings)
    leases: LeaseSettings = field(default_factory=LeaseSettings)
    ingest: IngressLimits = field(default_factory=IngressLimits)
    api: ApiSettings = field(default_factory=ApiSettings)
    oauth: OAuthSettings = field(default_factory=OAuthSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, default_worker_id: str = "") -> Settings:
        """Read every variable of ``VARIABLES``; raise ``InvalidSettings`` on the first bad one."""
        groups: dict[str, dict[str, Any]] = {}
        for variable in VARIABLES:
            group, name = variable.attr.split(".")
            groups.setdefault(group, {})[name] = variable.value_of(_read(variable, environ))
        streams, process = groups["streams"], groups["process"]
        if streams["dlq_stream"] is None:
            streams["dlq_stream"] = DEAD_LETTER_STREAM_PREFIX + streams["event_stream"]
        if streams["dlq_stream"] in (streams["event_stream"], f"{streams['event_stream']}:dlq"):
            raise InvalidSettings(
                f"EMAIL_SERVICE_DLQ_STREAM={streams['dlq_stream']!r} is not valid: that stream "
                "belongs to the product's consumer (its events, or its own dead letters, which "
                "its tools list and re-process). Leave EMAIL_SERVICE_DLQ_STREAM unset for "
                f"{DEAD_LETTER_STREAM_PREFIX}<event stream>, or name a stream of our own; "
                "`email-service dlq move --from STREAM` moves old dead letters of ours over."
            )
        if process["worker_id"] is None:
            process["worker_id"] = default_worker_id or socket.gethostname()
        for low, high in (
            ("streams.backlog_low_entries", "streams.backlog_high_entries"),
            ("streams.redis_memory_low_bytes", "streams.redis_memory_high_bytes"),
        ):
            if _value(groups, low) >= _value(groups, high):
                raise InvalidSettings(
                    f"{_env_of(low)} must be below {_env_of(high)} "
                    f"({_value(groups, low)} >= {_value(groups, high)}): the gap between them "
                    "keeps workers from pausing and resuming on every entry."
                )
        reconnect = groups["reconnect"]
        if reconnect["max_s"] < reconnect["base_s"]:
            raise InvalidSettings(
                "IMAP_RECONNECT_MAX_MS must be at least IMAP_RECONNECT_BASE_MS "
                f"({round(reconnect['max_s'] * MS_PER_S)} < "
                f"{round(reconnect['base_s'] * MS_PER_S)})."
            )
        return cls(**{name: GROUPS[name](**values) for name, values in groups.items()})

    def with_changes(self, **groups: Mapping[str, Any]) -> Settings:
        """These settings with some fields changed, by group:
        ``settings.with_changes(imap={"allow_private_hosts": True})``."""
        return dataclasses.replace(
            self,
            **{
                name: dataclasses.replace(getattr(self, name), **fields)
                for name, fields in groups.items()
            },
        )

    def require_redis_url(self) -> str:
        """The Redis URL, or ``InvalidSettings`` saying how to set it."""
        if self.streams.redis_url is None:
            raise InvalidSettings(
                "REDIS_URL is not set: set it to the Redis that holds the event stream, "
                "e.g. REDIS_URL=redis://127.0.0.1:6379/0"
            )
        return self.streams.redis_url

    def require_secret_keys(self) -> tuple[str, ...]:
        """The secret keys, or ``InvalidSettings`` saying how to make one."""
        if not self.store.secret_keys:
            raise InvalidSettings(
                "EMAIL_SERVICE_SECRET_KEYS is not set: it encrypts mailbox passwords and "
                "tokens. Make a key with `email-service keys generate` and set "
                "EMAIL_SERVICE_SECRET_KEYS=<key> (several keys, comma separated, to rotate)."
            )
        return self.store.secret_keys

    def require_api_jwt_key(self) -> str:
        """The key API tokens are checked with, or ``InvalidSettings`` naming the variable."""
        if self.api.jwt_algorithm == "hs256":
            if self.api.jwt_secret is None:
                raise InvalidSettings(
                    "EMAIL_SERVICE_API_JWT_SECRET is not set: `email-service api` checks bearer "
                    "tokens signed with HS256 against it. Set it to the secret the tenant UI "
                    "signs with (32 characters or more), or set "
                    "EMAIL_SERVICE_API_JWT_ALGORITHM=rs256 and EMAIL_SERVICE_API_JWT_PUBLIC_KEY."
                )
            return self.api.jwt_secret
        if self.api.jwt_public_key is None:
            raise InvalidSettings(
                "EMAIL_SERVICE_API_JWT_PUBLIC_KEY is not set: with "
                "EMAIL_SERVICE_API_JWT_ALGORITHM=rs256, `email-service api` checks bearer tokens "
                "against it. Set it to the PEM public key of the token issuer."
            )
        return self.api.jwt_public_key


#: The groups, by their attribute on ``Settings``.
GROUPS: Mapping[str, type[Any]] = {
    "store": StoreSettings,
    "streams": StreamSettings,
    "process": ProcessSettings,
    "imap": ImapSettings,
    "reconnect": ReconnectSettings,
    "leases": LeaseSettings,
    "ingest": IngressLimits,
    "api": ApiSettings,
    "oauth": OAuthSettings,
}
#: Every variable the service reads, group by group in declaration order.
VARIABLES: tuple[Variable, ...] = tuple(
    dataclasses.replace(f.metadata["variable"], attr=f"{group}.{f.name}")
    for group, kind in GROUPS.items()
    for f in dataclasses.fields(kind)
)


def default_of(env: str) -> Any:
    """The default of variable ``env`` as the variable gives it (milliseconds in ms)."""
    return next(v.default for v in VARIABLES if v.env == env)


def _read(variable: Variable, environ: Mapping[str, str]) -> Any:
    """What ``variable`` is set to (its default when unset or blank), as ``parse`` reads it."""
    raw = environ.get(variable.env)
    if raw is None or raw.strip() == "":
        return variable.default
    try:
        return variable.parse(raw)
    except ValueError as exc:
        shown = "(hidden)" if variable.secret else repr(raw)
        raise InvalidSettings(
            f"{variable.env}={shown} is not valid: {exc}. {variable.env} is the {variable.help}."
        ) from None


def _value(groups: Mapping[str, Mapping[str, Any]], attr: str) -> Any:
    group, name = attr.split(".")
    return groups[group][name]


def _env_of(attr: str) -> str:
    return next(v.env for v in VARIABLES if v.attr == attr)
