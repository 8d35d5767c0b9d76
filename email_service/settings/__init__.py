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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from email_service.errors import InvalidSettings
from email_service.settings.api import ApiSettings, OAuthSettings
from email_service.settings.fields import MS_PER_S, Variable
from email_service.settings.worker import (
    DEAD_LETTER_STREAM_PREFIX,
    DEFAULT_DATABASE_URL,
    DEFAULT_EVENT_STREAM,
    ImapSettings,
    IngressLimits,
    LeaseSettings,
    ProcessSettings,
    ReconnectSettings,
    StoreSettings,
    StreamSettings,
)

__all__ = [
    "DEAD_LETTER_STREAM_PREFIX",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_EVENT_STREAM",
    "GROUPS",
    "MS_PER_S",
    "VARIABLES",
    "ApiSettings",
    "ImapSettings",
    "IngressLimits",
    "LeaseSettings",
    "OAuthSettings",
    "ProcessSettings",
    "ReconnectSettings",
    "Settings",
    "StoreSettings",
    "StreamSettings",
    "Variable",
    "default_of",
]


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
