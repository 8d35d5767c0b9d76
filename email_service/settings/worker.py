"""The worker's settings, by role: store, streams, process, IMAP, reconnect, leases, ingest
limits (core: declarations)."""

from __future__ import annotations

from dataclasses import dataclass

from email_service.settings.fields import Group, setting
from email_service.settings.parsers import (
    parse_bool,
    parse_choice,
    parse_database_url,
    parse_fraction,
    parse_int,
    parse_keys,
    parse_redis_url,
    parse_text,
)

#: Default stream of the product's event bus (DESIGN.md section 3).
DEFAULT_EVENT_STREAM = "workflow:events:global"
#: Prefix of the default dead-letter stream: ours, not the consumer's ``<stream>:dlq``,
#: which its tools list and re-process (DESIGN.md section 3).
DEAD_LETTER_STREAM_PREFIX = "email-service:dead-letters:"
#: SQLite file in the working directory: the embedded default for a single-node run.
DEFAULT_DATABASE_URL = "sqlite:///email-service.db"


@dataclass(frozen=True, repr=False)
class StoreSettings(Group):
    """Where providers, cursors and leases live, and the keys that seal their secrets."""

    database_url: str = setting(
        "DATABASE_URL",
        parse_database_url,
        DEFAULT_DATABASE_URL,
        "PostgreSQL URL (production) or sqlite:///file (single node)",
        secret=True,
    )
    secret_keys: tuple[str, ...] = setting(
        "EMAIL_SERVICE_SECRET_KEYS",
        parse_keys,
        (),
        "Fernet keys, comma separated; the first encrypts, all decrypt "
        "(make one with `email-service keys generate`)",
        secret=True,
    )
    max_providers_per_tenant: int = setting(
        "EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT",
        parse_int(1),
        500,
        "most providers (mailboxes) one tenant may have; creating one more through the API "
        "or the CLI is refused",
    )


@dataclass(frozen=True, repr=False)
class StreamSettings(Group):
    """The Redis event stream, our dead letters, and when publishing waits (water marks)."""

    redis_url: str | None = setting(
        "REDIS_URL",
        parse_redis_url,
        None,
        "Redis holding the event stream, e.g. redis://127.0.0.1:6379/0",
        secret=True,
    )
    event_stream: str = setting(
        "EMAIL_SERVICE_EVENT_STREAM",
        parse_text,
        DEFAULT_EVENT_STREAM,
        "Redis stream the events are added to",
    )
    dlq_stream: str = setting(
        "EMAIL_SERVICE_DLQ_STREAM",
        parse_text,
        None,
        "dead-letter stream of ours; default email-service:dead-letters:<event stream>. "
        "Never <event stream>:dlq, the consumer's own dead-letter stream",
    )
    published_mark_ttl_s: int = setting(
        "EMAIL_SERVICE_PUBLISHED_MARK_TTL_S",
        parse_int(3600),
        30 * 24 * 3600,
        "how long Redis remembers the highest UID published per folder (idempotency "
        "window between publish and cursor write); refreshed on every publish",
    )
    event_channel_by_tenant: bool = setting(
        "IMAP_EVENT_CHANNEL_BY_TENANT",
        parse_bool,
        False,
        "execution_id is the tenant id instead of a new UUID",
    )
    backlog_high_entries: int = setting(
        "EMAIL_SERVICE_BACKLOG_HIGH_ENTRIES",
        parse_int(1),
        50_000,
        "unread or unacknowledged entries of the event stream's busiest consumer group above "
        "which workers stop catching up (cursors stay; nothing is lost or trimmed)",
    )
    backlog_low_entries: int = setting(
        "EMAIL_SERVICE_BACKLOG_LOW_ENTRIES",
        parse_int(0),
        25_000,
        "backlog below which paused workers resume (with the memory low mark)",
    )
    redis_memory_high_bytes: int = setting(
        "EMAIL_SERVICE_REDIS_MEMORY_HIGH_BYTES",
        parse_int(1),
        1024 * 1024 * 1024,
        "Redis used_memory above which workers stop catching up",
    )
    redis_memory_low_bytes: int = setting(
        "EMAIL_SERVICE_REDIS_MEMORY_LOW_BYTES",
        parse_int(0),
        768 * 1024 * 1024,
        "Redis used_memory below which paused workers resume (with the backlog low mark)",
    )


@dataclass(frozen=True, repr=False)
class ProcessSettings(Group):
    """The process itself: its name in leases, HTTP port and limits, logging, parse processes."""

    worker_id: str = setting(
        "EMAIL_SERVICE_WORKER_ID",
        parse_text,
        None,
        "name of this worker in leases; default <hostname>-<pid>",
    )
    http_port: int = setting(
        "EMAIL_SERVICE_HTTP_PORT",
        parse_int(0),
        8080,
        "port of /health, /ready and /metrics",
    )
    log_format: str = setting(
        "EMAIL_SERVICE_LOG_FORMAT",
        parse_choice("text", "json"),
        "text",
        "text or json",
    )
    log_level: str = setting(
        "EMAIL_SERVICE_LOG_LEVEL",
        parse_choice("debug", "info", "warning", "error"),
        "info",
        "log level",
    )
    http_max_connections: int = setting(
        "EMAIL_SERVICE_HTTP_MAX_CONNECTIONS",
        parse_int(16),
        2000,
        "most open HTTP connections of one server (the API, or a worker's /health server); "
        "more are closed at once. Lowered to what the open-file limit allows",
    )
    http_max_connections_per_ip: int = setting(
        "EMAIL_SERVICE_HTTP_MAX_CONNECTIONS_PER_IP",
        parse_int(0),
        200,
        "most open HTTP connections from one client address (0: no limit); behind a proxy or "
        "a sidecar every client has the proxy's address, so raise it or set 0 there",
    )
    parse_processes: int = setting(
        "EMAIL_SERVICE_PARSE_PROCESSES",
        parse_int(0),
        2,
        "processes that parse fetched mail next to the worker, so fetching and parsing a "
        "backlog overlap on other cores (about 45 MB each, started on first use); 0 parses "
        "on the listener threads",
    )


@dataclass(frozen=True, repr=False)
class ImapSettings(Group):
    """How the worker and the API talk to mail servers."""

    connection_timeout_s: float = setting(
        "IMAP_CONNECTION_TIMEOUT_MS",
        parse_int(100),
        10_000,
        "TCP connect and per-command timeout",
        unit="ms",
    )
    max_emails_per_sync: int = setting(
        "IMAP_MAX_EMAILS_PER_SYNC",
        parse_int(0),
        5,
        "how many of the newest messages a folder with no cursor starts from",
    )
    socket_keepalive: bool = setting(
        "IMAP_SOCKET_KEEPALIVE",
        parse_bool,
        True,
        "TCP keepalive on IMAP sockets, so half-open connections are found",
    )
    poll_interval_s: float = setting(
        "IMAP_POLL_INTERVAL_MS",
        parse_int(100),
        15_000,
        "how often a polled folder is checked: servers without IDLE, and folders beyond "
        "the connection budget (checked round-robin with STATUS)",
        unit="ms",
    )
    max_connections_per_account: int = setting(
        "IMAP_MAX_CONNECTIONS_PER_ACCOUNT",
        parse_int(1),
        5,
        "most IMAP connections one mailbox account holds at once, unless its provider sets "
        "its own; folders beyond it share one connection polled with STATUS",
    )
    max_connections_per_tenant: int = setting(
        "IMAP_MAX_CONNECTIONS_PER_TENANT",
        parse_int(1),
        50,
        "most IMAP connections all providers of one tenant hold together, across all "
        "workers; beyond it folders move from IDLE to polling, and when even one connection "
        "per provider is too many, providers take turns on a few shared connections",
    )
    idle_reissue_s: float = setting(
        "IMAP_IDLE_REISSUE_MS",
        parse_int(1000),
        120_000,
        "IDLE is ended, the folder examined again and IDLE re-entered this often: the bound "
        "on finding a silently dead connection (with IMAP_CONNECTION_TIMEOUT_MS) and on "
        "noticing a folder recreated without a sign from the server; RFC 2177 asks < 29 min",
        unit="ms",
    )
    tls_reject_unauthorized: bool = setting(
        "IMAP_TLS_REJECT_UNAUTHORIZED",
        parse_bool,
        True,
        "verify IMAP server certificates; false only for tests with throwaway servers",
    )
    oauth_auth_mechanism: str | None = setting(
        "IMAP_OAUTH_AUTH_MECHANISM",
        parse_choice("xoauth2", "oauthbearer"),
        None,
        "SASL mechanism for OAuth logins; unset means chosen from CAPABILITY",
    )
    allow_private_hosts: bool = setting(
        "IMAP_ALLOW_PRIVATE_HOSTS",
        parse_bool,
        False,
        "allow tenants' hosts (IMAP servers, OAuth token endpoints) that resolve to private, "
        "loopback or link-local addresses (refused by default against server-side request "
        "forgery, at every connection)",
    )


@dataclass(frozen=True, repr=False)
class ReconnectSettings(Group):
    """Timers: start-up stagger, reconnect backoff, jitter."""

    timer_jitter_pct: float = setting(
        "IMAP_TIMER_JITTER_PCT",
        parse_fraction,
        0.1,
        "jitter applied to periodic timers",
    )
    startup_stagger_s: float = setting(
        "IMAP_STARTUP_STAGGER_MS",
        parse_int(0),
        2000,
        "listener start-up is spread over this window",
        unit="ms",
    )
    jitter_pct: float = setting(
        "IMAP_RECONNECT_JITTER_PCT",
        parse_fraction,
        0.5,
        "jitter applied to reconnect backoff",
    )
    base_s: float = setting(
        "IMAP_RECONNECT_BASE_MS",
        parse_int(10),
        1000,
        "first reconnect delay; doubles on each failure",
        unit="ms",
    )
    max_s: float = setting(
        "IMAP_RECONNECT_MAX_MS",
        parse_int(100),
        300_000,
        "upper bound of the reconnect delay",
        unit="ms",
    )
    stable_s: float = setting(
        "IMAP_RECONNECT_STABLE_MS",
        parse_int(0),
        120_000,
        "a connection must stay up this long before the backoff resets",
        unit="ms",
    )


@dataclass(frozen=True, repr=False)
class LeaseSettings(Group):
    """Provider leases between workers."""

    lease_ttl_s: float = setting(
        "IMAP_LEASE_TTL_MS",
        parse_int(3000),
        15_000,
        "how long a provider lease lasts without renewal (database clock); a killed worker's "
        "folders are taken over within about this plus IMAP_PROVIDER_REFRESH_MS",
        unit="ms",
    )
    provider_refresh_s: float = setting(
        "IMAP_PROVIDER_REFRESH_MS",
        parse_int(100),
        5_000,
        "how often the worker looks for new, changed and removed providers, and for leases "
        "that expired",
        unit="ms",
    )


@dataclass(frozen=True, repr=False)
class IngressLimits(Group):
    """The caps of fetching and of one event (fetch planning, event caps, publish chunking)."""

    fetch_batch_size: int = setting(
        "IMAP_FETCH_BATCH_SIZE",
        parse_int(1),
        50,
        "UIDs fetched, published and committed per batch while catching up",
    )
    max_attachment_bytes: int = setting(
        "IMAP_MAX_ATTACHMENT_BYTES",
        parse_int(1),
        10 * 1024 * 1024,
        "largest attachment listed in an event's attachments; larger ones are named in "
        "ingressSkipReasons instead (the old service's name and default)",
    )
    max_total_attachment_bytes: int = setting(
        "IMAP_MAX_TOTAL_ATTACHMENT_BYTES",
        parse_int(1),
        25 * 1024 * 1024,
        "most attachment bytes listed in one event; attachments past it are named in "
        "ingressSkipReasons instead",
    )
    max_attachment_count: int = setting(
        "IMAP_MAX_ATTACHMENT_COUNT",
        parse_int(1),
        25,
        "most attachments listed in one event; the rest are named in ingressSkipReasons",
    )
    max_raw_mime_bytes: int = setting(
        "IMAP_MAX_RAW_MIME_BYTES",
        parse_int(1024),
        25 * 1024 * 1024,
        "largest message downloaded whole (by RFC822.SIZE); a larger one is read from its "
        "headers, BODYSTRUCTURE and capped text parts. Bounds the worker's memory: parsing "
        "takes about 4 times the message",
    )
    max_header_bytes: int = setting(
        "IMAP_MAX_HEADER_BYTES",
        parse_int(1024),
        64 * 1024,
        "most bytes of header fields (names and values) in an event's headers",
    )
    max_body_text_bytes: int = setting(
        "IMAP_MAX_BODY_TEXT_BYTES",
        parse_int(1024),
        256 * 1024,
        "most bytes of body.text, and of body.html, in an event",
    )
    max_event_bytes: int = setting(
        "EMAIL_SERVICE_MAX_EVENT_BYTES",
        parse_int(4096),
        1024 * 1024,
        "most bytes of one stream entry (field names and values); a larger event loses its "
        "HTML, then text, headers, recipients and attachment list, or becomes a dead letter",
    )
    inline_content: str = setting(
        "IMAP_INLINE_CONTENT",
        parse_choice("off", "attachments", "all"),
        "attachments",
        "what goes inline in an event: off (metadata only), attachments (each listed "
        "attachment's bytes as base64 content) or all (also the whole message as "
        "rawMimeBase64), while the entry fits EMAIL_SERVICE_MAX_EVENT_BYTES; the rest is "
        "fetched through the API (contentLocation)",
    )
    dead_letter_raw_bytes: int = setting(
        "EMAIL_SERVICE_DLQ_MAX_RAW_BYTES",
        parse_int(0),
        256 * 1024,
        "largest raw message kept inside a dead-letter entry; larger ones are fetched again "
        "by UID when replayed",
    )
