"""Request validation with field-named errors (core: JSON in, typed request or problems out).

A field's rules are declared once, in ``fields`` (its JSON Schema, what it accepts in
words, how a valid value is normalised); this module checks bodies against those
declarations and adds what no single field can say (required fields, create-only fields,
OAuth fields only with ``authType: oauth2``). ``openapi`` documents the same declarations.
Every problem is collected, not just the first, and no message repeats the value it
rejects.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from email_service.api.fields import (
    CREATE_ONLY_FIELDS,
    PROVIDER_FIELDS,
    RequestField,
    conforms,
)
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
from providers.presets import APP_CREDENTIAL_TYPES, preset_for

#: Provider ids are UUIDs here; the product may write its own, up to the column's size.
MAX_PROVIDER_ID_CHARS = 64
#: Providers on a page when the request does not say (``?limit=``), and the most it may ask.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Longest ``?cursor=`` accepted: a creation time and a provider id, encoded.
MAX_CURSOR_CHARS = 200
#: Longest unknown field or parameter name quoted back in an error: enough to recognise a
#: typo, never a 60 KB key returned whole.
MAX_QUOTED_NAME_CHARS = 64

#: What each field accepts, in words (for messages).
ACCEPTED = {name: spec.accepted for name, spec in PROVIDER_FIELDS.items()}
CREATE_ONLY = {name: spec.accepted for name, spec in CREATE_ONLY_FIELDS.items()}
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
    checked = _check_fields(values, CREATE_ONLY_FIELDS, problems)
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
        checked = _check_fields(values, {"folders": PROVIDER_FIELDS["folders"]}, problems)
        folders = checked.get("folders")
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
    """Each present provider field checked and normalised; problems recorded for the rest."""
    return _check_fields(values, PROVIDER_FIELDS, problems)


def _check_fields(
    values: Mapping[str, Any], declared: Mapping[str, RequestField], problems: _Collector
) -> dict[str, Any]:
    """Each present field of ``declared`` checked against its declaration and normalised;
    a list whose items are described names each bad or repeated item."""
    checked: dict[str, Any] = {}
    for name, value in values.items():
        spec = declared.get(name)
        if spec is None:
            continue
        if spec.item_accepted is not None and isinstance(value, list):
            whole = {k: v for k, v in spec.schema.items() if k not in {"items", "uniqueItems"}}
            if not conforms(whole, value):  # too many: said of the list, not of each item
                problems.add(name, "expected " + spec.accepted)
                continue
            if not _check_items(name, value, spec, problems):
                continue
        ok, normalised = spec.check(value)
        if ok:
            checked[name] = normalised
        else:
            problems.add(name, "expected " + spec.accepted)
    return checked


def _check_items(name: str, items: list[Any], spec: RequestField, problems: _Collector) -> bool:
    """Whether every item of the list ``name`` is valid and listed once; problems per item."""
    item_schema = spec.schema["items"]
    seen: dict[str, int] = {}
    ok = True
    for index, item in enumerate(items):
        label = f"{name}[{index}]"
        if not conforms(item_schema, item):
            problems.add(label, f"expected {spec.item_accepted}")
            ok = False
        elif spec.schema.get("uniqueItems") and item in seen:
            problems.add(label, f"repeats {name}[{seen[item]}]; list each once")
            ok = False
        else:
            seen[item] = index
    return ok
