"""Request validation with field-named errors (core: JSON in, typed request or problems out).

Each rule is written once here, as a constant or a pattern, and ``openapi`` builds the
document's schemas from the same constants, so the two cannot drift apart silently (the
schemathesis run checks the rest). Every problem is collected, not just the first, and no
message repeats the value it rejects.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from email_service.api.problems import ApiProblem, FieldProblem, invalid_fields
from email_service.contract.formats import is_contract_uuid
from email_service.model import (
    AUTH_OAUTH2,
    AUTH_PASSWORD,
    KEEP,
    ImapEndpoint,
    NewProvider,
    OAuthFields,
    PageKey,
    ProviderChanges,
    Security,
)
from providers.presets import APP_CREDENTIAL_TYPES, PROVIDER_TYPES, preset_for

#: Column sizes of ``email_providers`` / ``imap_email_provider_config`` (schema.py).
MAX_NAME_CHARS = 255
MAX_MAILBOX_CHARS = 320
MAX_USERNAME_CHARS = 320
#: RFC 1035: a host name is at most 253 characters (255 octets on the wire).
MAX_HOST_CHARS = 253
#: ``imap_folder_state.folder`` is String(1000).
MAX_FOLDER_CHARS = 1000
#: Generous for any real password, small enough that nobody stores a document in it.
MAX_PASSWORD_CHARS = 1024
#: Folders one provider may monitor: each may hold a connection or a poller slot.
MAX_FOLDERS = 100
#: Upper bound of a provider's own connection budget; servers cap far lower (Gmail 15).
MAX_CONNECTIONS = 100
#: Provider ids are UUIDs here; the product may write its own, up to the column's size.
MAX_PROVIDER_ID_CHARS = 64
#: Scopes one OAuth provider may ask for, and their length.
MAX_SCOPES = 20
MAX_SCOPE_CHARS = 200
MAX_URL_CHARS = 2000
#: Providers on a page when the request does not say (``?limit=``), and the most it may ask.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Longest ``?cursor=`` accepted: a creation time and a provider id, encoded.
MAX_CURSOR_CHARS = 200
#: Longest unknown field or parameter name quoted back in an error: enough to recognise a
#: typo, never a 60 KB key returned whole.
MAX_QUOTED_NAME_CHARS = 64

#: Printable text without leading or trailing blanks: names, user names.
TEXT_PATTERN = r"^[^\u0000-\u0020\u007f]([^\u0000-\u001f\u007f]*[^\u0000-\u0020\u007f])?$"
#: An address with one ``@``, no blanks or control characters.
MAILBOX_PATTERN = r"^[^\u0000-\u0020\u007f@]+@[^\u0000-\u0020\u007f@]+$"
#: Letters, digits, dots, hyphens, colons (IPv6); refined by ``_check_host``.
HOST_PATTERN = r"^[A-Za-z0-9.:-]+$"
#: Anything but NUL, CR and LF, which would break the IMAP LOGIN command.
PASSWORD_PATTERN = r"^[^\u0000\u000a\u000d]+$"  # noqa: S105 - a pattern
#: OAuth scopes (RFC 6749 3.3: printable ASCII without space, quote or backslash).
SCOPE_PATTERN = r"^[\x21\x23-\x5b\x5d-\x7e]{1,200}$"
#: Folder names: no control characters (IMAP names them with modified UTF-7 on the wire).
FOLDER_PATTERN = r"^[^\u0000-\u001f\u007f]+$"

_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

#: Fields of a provider that a request may set, with what each accepts (for messages).
ACCEPTED = {
    "name": f"a display name of 1 to {MAX_NAME_CHARS} characters, without control "
    "characters or leading/trailing blanks",
    "mailbox": f"an email address of at most {MAX_MAILBOX_CHARS} characters",
    "host": "a host name (imap.example.com) or an IPv4/IPv6 address, without port",
    "port": "a whole number from 1 to 65535",
    "security": "one of " + ", ".join(s.value for s in Security),
    "username": f"a user name of 1 to {MAX_USERNAME_CHARS} characters, without control "
    "characters or leading/trailing blanks",
    "password": f"a password of 1 to {MAX_PASSWORD_CHARS} characters, without line breaks",
    "folders": f"a list of at most {MAX_FOLDERS} distinct folder names (1 to "
    f"{MAX_FOLDER_CHARS} characters, no control characters); empty means INBOX",
    "maxConnections": f"a whole number from 1 to {MAX_CONNECTIONS}, or null for the default",
    "isActive": "true or false",
}
#: Fields only a create request may carry (they decide how the provider logs in).
CREATE_ONLY = {
    "providerType": "one of " + ", ".join(PROVIDER_TYPES) + " (default imap); google and "
    "microsoft fill in host, port, security and the OAuth endpoints",
    "authType": f"{AUTH_PASSWORD} (default) or {AUTH_OAUTH2}",
    "oauthClientId": "the OAuth client id (default: the operator's app for google/microsoft)",
    "oauthClientSecret": f"the OAuth client secret, 1 to {MAX_PASSWORD_CHARS} characters",
    "oauthAuthorizeUrl": "the authorization endpoint, an https URL (default: the preset's)",
    "oauthTokenUrl": "the token endpoint, an https URL (default: the preset's)",
    "oauthScopes": f"a list of at most {MAX_SCOPES} scopes (default: the preset's)",
}
#: Always required on create; host, port and security too unless the preset has them;
#: password when ``authType`` is password.
REQUIRED_ON_CREATE = ("name", "mailbox", "username")
ENDPOINT_FIELDS = ("host", "port", "security")
#: Fields of other tools' provider rows that the API refuses, with the reason.
REFUSED = {
    "tlsCaFile": "not accepted through the API: a CA file is a file on the server; an "
    "operator sets it with `email-service provider add --tls-ca-file`",
}


@dataclass(frozen=True)
class ProviderInput:
    """A valid create request."""

    name: str
    mailbox: str
    host: str
    port: int
    security: Security
    username: str
    password: str | None = field(repr=False)
    folders: tuple[str, ...]
    max_connections: int | None
    is_active: bool
    provider_type: str = "imap"
    auth_type: str = AUTH_PASSWORD
    oauth: OAuthFields = field(default_factory=OAuthFields)
    client_secret: str | None = field(default=None, repr=False)

    def to_new_provider(self, tenant: str) -> NewProvider:
        return NewProvider(
            tenant=tenant,
            name=self.name,
            mailbox=self.mailbox,
            endpoint=ImapEndpoint(host=self.host, port=self.port, security=self.security),
            username=self.username,
            folders=self.folders,
            max_connections=self.max_connections,
            is_active=self.is_active,
            provider_type=self.provider_type,
            auth_type=self.auth_type,
            oauth=self.oauth,
        )


@dataclass(frozen=True)
class ProviderPatch:
    """A valid update request: the changes, and a new password when one was sent."""

    changes: ProviderChanges
    password: str | None = field(repr=False)


class _Collector:
    def __init__(self) -> None:
        self.problems: list[FieldProblem] = []

    def add(self, name: str, message: str) -> None:
        self.problems.append(FieldProblem(name, message))


def require_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ApiProblem(400, "invalid_body", "the request body must be a JSON object")
    return body


def validate_create(body: Any) -> ProviderInput:
    """The create request in ``body``, or ``ApiProblem`` (422) naming every bad field."""
    values = require_object(body)
    problems = _Collector()
    _check_keys(values, problems, create=True)
    checked = _check_values(values, problems)
    login = _check_login(values, problems)
    preset = preset_for(login.get("providerType", "imap"))
    auth_type = login.get("authType", AUTH_PASSWORD)
    required = list(REQUIRED_ON_CREATE)
    if preset.imap_host is None:
        required += ENDPOINT_FIELDS
    if auth_type == AUTH_PASSWORD:
        required.append("password")
    elif "password" in values:
        problems.add("password", f"not used with authType {AUTH_OAUTH2}: leave it out")
    for name in required:
        if name not in values:
            problems.add(name, f"required: {ACCEPTED[name]}")
    host = checked.get("host", preset.imap_host)
    if problems.problems or host is None:
        raise invalid_fields(problems.problems)
    return ProviderInput(
        name=checked["name"],
        mailbox=checked["mailbox"],
        host=host,
        port=checked.get("port", preset.imap_port),
        security=checked.get("security", Security.TLS),
        username=checked["username"],
        password=checked.get("password"),
        folders=checked.get("folders", ()),
        max_connections=checked.get("maxConnections"),
        is_active=checked.get("isActive", True),
        provider_type=preset.provider_type,
        auth_type=auth_type,
        oauth=OAuthFields(
            authorize_url=login.get("oauthAuthorizeUrl"),
            token_url=login.get("oauthTokenUrl"),
            client_id=login.get("oauthClientId"),
            scopes=login.get("oauthScopes", ()),
        ),
        client_secret=login.get("oauthClientSecret"),
    )


def _check_login(values: Mapping[str, Any], problems: _Collector) -> dict[str, Any]:
    """The create-only fields (provider type, auth type, OAuth client), checked."""
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in CREATE_ONLY:
            continue
        ok = isinstance(value, str) and 0 < len(value) <= MAX_URL_CHARS and is_utf8(value)
        if name == "providerType":
            ok = isinstance(value, str) and value in PROVIDER_TYPES
        elif name == "authType":
            ok = isinstance(value, str) and value in {AUTH_PASSWORD, AUTH_OAUTH2}
        elif name == "oauthClientSecret":
            ok = (
                ok
                and len(value) <= MAX_PASSWORD_CHARS
                and re.fullmatch(PASSWORD_PATTERN, value) is not None
            )
        elif name == "oauthClientId":
            ok = ok and re.fullmatch(TEXT_PATTERN, value) is not None
        elif name in {"oauthAuthorizeUrl", "oauthTokenUrl"}:
            ok = ok and _is_web_url(value)
        elif name == "oauthScopes":
            ok = (
                isinstance(value, list)
                and len(value) <= MAX_SCOPES
                and all(
                    isinstance(v, str) and re.fullmatch(SCOPE_PATTERN, v) is not None for v in value
                )
            )
        if ok:
            checked[name] = tuple(value) if name == "oauthScopes" else value
        else:
            problems.add(name, "expected " + CREATE_ONLY[name])
    oauth_fields = [name for name in checked if name.startswith("oauth")]
    if checked.get("authType", AUTH_PASSWORD) != AUTH_OAUTH2:
        for name in oauth_fields:
            problems.add(name, f"only with authType {AUTH_OAUTH2}")
    _require_own_client(values, checked, problems)
    return checked


def _require_own_client(
    values: Mapping[str, Any], checked: Mapping[str, Any], problems: _Collector
) -> None:
    """A google/microsoft provider with an endpoint of its own brings its own client: the
    operator's app credentials go only to the preset's endpoints
    (``credentials.oauth_clients``)."""
    provider_type = checked.get("providerType", "imap")
    own = [name for name in ("oauthAuthorizeUrl", "oauthTokenUrl") if name in checked]
    if not own or provider_type not in APP_CREDENTIAL_TYPES:
        return
    for name in ("oauthClientId", "oauthClientSecret"):
        if name not in values:
            problems.add(
                name,
                f"required with {' and '.join(own)}: the operator's app credentials go "
                f"only to the {provider_type} preset's own endpoints",
            )


def _is_web_url(value: str) -> bool:
    """An absolute http(s) URL with a host, a port (if any) from 1 to 65535, no user
    information (``user:password@``, even with an empty user) and no fragment."""
    if not value.isprintable() or " " in value or not is_utf8(value):
        return False
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:  # ":99999", ":abc", ":-1"
        return False
    return (
        parts.scheme in {"https", "http"}
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and port != 0
        and not parts.fragment
    )


def is_utf8(value: str) -> bool:
    """Whether ``value`` can be stored: JSON allows lone surrogates (``\\ud800``), UTF-8 not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_update(body: Any) -> ProviderPatch:
    """The update request in ``body`` (any subset of the fields, at least one)."""
    values = require_object(body)
    problems = _Collector()
    if not values:
        problems.add("body", "give at least one field to change: " + ", ".join(ACCEPTED))
    _check_keys(values, problems)
    checked = _check_values(values, problems)
    if problems.problems:
        raise invalid_fields(problems.problems)

    return ProviderPatch(
        changes=ProviderChanges(
            name=checked.get("name", KEEP),
            mailbox=checked.get("mailbox", KEEP),
            host=checked.get("host", KEEP),
            port=checked.get("port", KEEP),
            security=checked.get("security", KEEP),
            username=checked.get("username", KEEP),
            folders=checked.get("folders", KEEP),
            max_connections=checked.get("maxConnections", KEEP),
            is_active=checked.get("isActive", KEEP),
        ),
        password=checked.get("password"),
    )


def validate_resync(body: Any, configured: Sequence[str]) -> tuple[str, ...] | None:
    """The folders to re-baseline (None: all); each must be one the provider monitors."""
    if body is None:
        return None
    values = require_object(body)
    problems = _Collector()
    for key in values:
        if key != "folders":
            problems.add(quoted_name(key), "unknown field; accepted: folders")
    folders: tuple[str, ...] | None = None
    if "folders" in values:
        checked = _check_folders(values["folders"], problems, "folders")
        folders = None if checked is _INVALID else checked
        for index, folder in enumerate(folders or ()):
            if folder not in configured:
                problems.add(
                    f"folders[{index}]",
                    "not a monitored folder of this provider; monitored: " + ", ".join(configured),
                )
        if folders == ():
            problems.add("folders", "give at least one folder, or leave the field out for all")
    if problems.problems:
        raise invalid_fields(problems.problems)
    return folders


def validate_flag(name: str, value: str | None) -> bool:
    """A boolean query parameter (``true``/``false``; absent means false)."""
    if value is None:
        return False
    if value in {"true", "false"}:
        return value == "true"
    raise invalid_fields([FieldProblem(name, "expected true or false")])


@dataclass(frozen=True)
class PageRequest:
    """Which page of a list to answer: at most ``limit`` items after ``after``."""

    limit: int
    after: PageKey | None


def validate_page(limit: str | None, cursor: str | None) -> PageRequest:
    """``?limit=`` (1 to ``MAX_PAGE_SIZE``, default ``DEFAULT_PAGE_SIZE``) and ``?cursor=``
    (the ``nextCursor`` of the previous page); 422 naming the parameter otherwise."""
    problems = _Collector()
    size = DEFAULT_PAGE_SIZE
    if limit is not None:
        if re.fullmatch(r"[0-9]{1,4}", limit) and 1 <= int(limit) <= MAX_PAGE_SIZE:
            size = int(limit)
        else:
            problems.add("limit", f"expected a whole number from 1 to {MAX_PAGE_SIZE}")
    after = None
    if cursor is not None:
        after = decode_cursor(cursor)
        if after is None:
            problems.add("cursor", "expected the nextCursor of an earlier answer, unchanged")
    if problems.problems:
        raise invalid_fields(problems.problems)
    return PageRequest(size, after)


def encode_cursor(key: PageKey) -> str:
    """An opaque ``nextCursor``: where the page ended (not signed: it only picks a starting
    point within the caller's own providers)."""
    text = json.dumps([key.created_at.isoformat(), key.provider_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> PageKey | None:
    """The ``PageKey`` in ``cursor``, or None when it is not one of ours."""
    if not 0 < len(cursor) <= MAX_CURSOR_CHARS or not re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, provider_id = json.loads(text)
        created_at = datetime.fromisoformat(created)
    except (ValueError, TypeError):  # bad base64, UTF-8, JSON, shape or date
        return None
    if created_at.tzinfo is None or not isinstance(provider_id, str):
        return None
    if not validate_provider_id(provider_id):
        return None
    return PageKey(created_at, provider_id)


def validate_provider_id(value: str) -> bool:
    """Whether ``value`` can be a provider id at all (otherwise the answer is 404)."""
    return 0 < len(value) <= MAX_PROVIDER_ID_CHARS and value.isprintable()


def is_valid_tenant(value: Any) -> bool:
    """Whether ``value`` is a tenant id: a UUID (``contract.formats.is_contract_uuid``)."""
    return isinstance(value, str) and is_contract_uuid(value)


# -- field rules ---------------------------------------------------------------------------


def _check_keys(values: Mapping[str, Any], problems: _Collector, *, create: bool = False) -> None:
    for key in values:
        if key in REFUSED:
            problems.add(key, REFUSED[key])
        elif key in CREATE_ONLY and not create:
            problems.add(key, "set only when the provider is created")
        elif key not in ACCEPTED and not (create and key in CREATE_ONLY):
            problems.add(quoted_name(key), "unknown field; accepted: " + ", ".join(ACCEPTED))


def quoted_name(name: str) -> str:
    """A name the client sent, as an error quotes it: at most ``MAX_QUOTED_NAME_CHARS``."""
    if len(name) <= MAX_QUOTED_NAME_CHARS:
        return name
    return name[: MAX_QUOTED_NAME_CHARS - 3] + "..."


def _check_values(values: Mapping[str, Any], problems: _Collector) -> dict[str, Any]:
    """Each present, known field checked and normalised; problems recorded for the rest."""
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in ACCEPTED:
            continue
        result = _CHECKS[name](value, problems, name)
        if result is not _INVALID:
            checked[name] = result
    return checked


class _Invalid:
    pass


_INVALID: Any = _Invalid()


def _check_text(pattern: str, max_chars: int) -> Any:
    def check(value: Any, problems: _Collector, name: str) -> Any:
        if (
            not isinstance(value, str)
            or not 0 < len(value) <= max_chars
            or re.fullmatch(pattern, value) is None
            or not is_utf8(value)
        ):
            problems.add(name, "expected " + ACCEPTED[name])
            return _INVALID
        return value

    return check


def _check_host(value: Any, problems: _Collector, name: str) -> Any:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_HOST_CHARS:
        problems.add(name, "expected " + ACCEPTED[name])
        return _INVALID
    host = normalise_host(value)
    if host is None:
        problems.add(name, "expected " + ACCEPTED[name])
        return _INVALID
    return host


def normalise_host(value: str) -> str | None:
    """``value`` as a lower-case host name or a canonical IP address; None if it is neither."""
    if re.fullmatch(HOST_PATTERN, value) is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    host = value.lower()
    labels = host.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None  # "127.1" or "2130706433": numeric forms that are not canonical IPs
    return host


def _check_port(value: Any, problems: _Collector, name: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        problems.add(name, "expected " + ACCEPTED[name])
        return _INVALID
    return value


def _check_security(value: Any, problems: _Collector, name: str) -> Any:
    if not isinstance(value, str) or value not in {s.value for s in Security}:
        problems.add(name, "expected " + ACCEPTED[name])
        return _INVALID
    return Security(value)


def _check_folders(value: Any, problems: _Collector, name: str) -> Any:
    if not isinstance(value, list) or len(value) > MAX_FOLDERS:
        problems.add(name, "expected " + ACCEPTED["folders"])
        return _INVALID
    seen: dict[str, int] = {}
    ok = True
    for index, folder in enumerate(value):
        item = f"{name}[{index}]"
        if (
            not isinstance(folder, str)
            or not 0 < len(folder) <= MAX_FOLDER_CHARS
            or re.fullmatch(FOLDER_PATTERN, folder) is None
            or not is_utf8(folder)
        ):
            problems.add(
                item,
                f"expected a folder name of 1 to {MAX_FOLDER_CHARS} characters, no "
                "control characters",
            )
            ok = False
        elif folder in seen:
            problems.add(item, f"repeats {name}[{seen[folder]}]; list each folder once")
            ok = False
        else:
            seen[folder] = index
    return tuple(value) if ok else _INVALID


def _check_max_connections(value: Any, problems: _Collector, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONNECTIONS:
        problems.add(name, "expected " + ACCEPTED[name])
        return _INVALID
    return value


def _check_bool(value: Any, problems: _Collector, name: str) -> Any:
    if not isinstance(value, bool):
        problems.add(name, "expected " + ACCEPTED[name])
        return _INVALID
    return value


_CHECKS = {
    "name": _check_text(TEXT_PATTERN, MAX_NAME_CHARS),
    "mailbox": _check_text(MAILBOX_PATTERN, MAX_MAILBOX_CHARS),
    "host": _check_host,
    "port": _check_port,
    "security": _check_security,
    "username": _check_text(TEXT_PATTERN, MAX_USERNAME_CHARS),
    "password": _check_text(PASSWORD_PATTERN, MAX_PASSWORD_CHARS),
    "folders": _check_folders,
    "maxConnections": _check_max_connections,
    "isActive": _check_bool,
}
