"""The provider request fields, declared once (core).

Each field is a ``RequestField``: its JSON Schema, what it accepts in words, and how a
valid value is normalised. ``openapi`` puts the schemas and the words in the document;
``validation`` checks request bodies by interpreting the very same schemas (``conforms``)
and answers with the same words, so the document and the checks cannot say different
things. ``conforms`` knows the keywords used here: ``type``, ``enum``, ``minLength``,
``maxLength``, ``pattern``, ``minimum``, ``maximum``, ``maxItems``, ``uniqueItems`` and
``items``. A pattern must match the whole value (``re.fullmatch``: the patterns are anchored,
so JSON Schema's search agrees, except that ``$`` would also allow a final line break, which
none of the character classes admits). Every string must also be encodable as UTF-8: JSON
allows lone surrogates (``\\ud800``), the database does not.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from email_service.model import AUTH_OAUTH2, AUTH_PASSWORD, Security
from providers.presets import PROVIDER_TYPES

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
#: Scopes one OAuth provider may ask for, and their length.
MAX_SCOPES = 20
MAX_SCOPE_CHARS = 200
MAX_URL_CHARS = 2000

#: Printable text without leading or trailing blanks: names, user names.
TEXT_PATTERN = r"^[^\u0000-\u0020\u007f]([^\u0000-\u001f\u007f]*[^\u0000-\u0020\u007f])?$"
#: An address with one ``@``, no blanks or control characters.
MAILBOX_PATTERN = r"^[^\u0000-\u0020\u007f@]+@[^\u0000-\u0020\u007f@]+$"
#: Letters, digits, dots, hyphens, colons (IPv6); refined by ``normalise_host``.
HOST_PATTERN = r"^[A-Za-z0-9.:-]+$"
#: Anything but NUL, CR and LF, which would break the IMAP LOGIN command.
PASSWORD_PATTERN = r"^[^\u0000\u000a\u000d]+$"  # noqa: S105 - a pattern
#: OAuth scopes (RFC 6749 3.3: printable ASCII without space, quote or backslash).
SCOPE_PATTERN = r"^[\x21\x23-\x5b\x5d-\x7e]{1,200}$"
#: Folder names: no control characters (IMAP names them with modified UTF-7 on the wire).
FOLDER_PATTERN = r"^[^\u0000-\u001f\u007f]+$"

_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_JSON_TYPES: Mapping[str, Callable[[Any], bool]] = MappingProxyType(
    {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
    }
)


def _unchanged(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class RequestField:
    """One field a request may carry."""

    schema: Mapping[str, Any]
    #: What is accepted, in words: the document's description and the error message.
    accepted: str
    #: The valid value as kept (raises ``ValueError`` when the schema is not all it takes).
    normalise: Callable[[Any], Any] = _unchanged
    #: Said in the document only, after ``accepted``.
    note: str = ""
    #: For a list: what one item accepts (the error then names the item: ``folders[2]``).
    item_accepted: str | None = None
    #: Keywords only the document shows, not checked (``writeOnly`` of a secret).
    extra_schema: Mapping[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The field's schema in the OpenAPI document."""
        return {**self.schema, **self.extra_schema, "description": self.accepted + self.note}

    def check(self, value: Any) -> tuple[bool, Any]:
        """Whether ``value`` is valid, and its normalised form."""
        if not conforms(self.schema, value):
            return False, None
        try:
            return True, self.normalise(value)
        except ValueError:
            return False, None


def conforms(schema: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` satisfies ``schema`` (the keywords the module docstring lists)."""
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        if not any(_JSON_TYPES[name](value) for name in names):
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, str) and not _string_conforms(schema, value):
        return False
    if _JSON_TYPES["integer"](value) and not (
        schema.get("minimum", value) <= value <= schema.get("maximum", value)
    ):
        return False
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            return False
        items = schema.get("items")
        if items is not None and not all(conforms(items, item) for item in value):
            return False
        if schema.get("uniqueItems") and len(set(map(repr, value))) != len(value):
            return False
    return True


def _string_conforms(schema: Mapping[str, Any], value: str) -> bool:
    if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        return False
    pattern = schema.get("pattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        return False
    return is_utf8(value)


def is_utf8(value: str) -> bool:
    """Whether ``value`` can be stored: JSON allows lone surrogates (``\\ud800``), UTF-8 not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def is_web_url(value: str) -> bool:
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


def _host(value: str) -> str:
    host = normalise_host(value)
    if host is None:
        raise ValueError("not a host name or IP address")
    return host


def _web_url(value: str) -> str:
    if not is_web_url(value):
        raise ValueError("not an absolute http(s) URL")
    return value


def _text(max_chars: int, pattern: str = TEXT_PATTERN, min_chars: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_chars, "maxLength": max_chars, "pattern": pattern}


_SECRET_SCHEMA = _text(MAX_PASSWORD_CHARS, PASSWORD_PATTERN)
#: A password or client secret: write-only, never returned.
_SECRET_EXTRA = {"writeOnly": True}
_SECRET_NOTE = ". Write-only: stored encrypted, never returned."  # noqa: S105 - words
_URL_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_URL_CHARS}

#: Fields of a provider that a create or update request may set.
PROVIDER_FIELDS: Mapping[str, RequestField] = MappingProxyType(
    {
        "name": RequestField(
            _text(MAX_NAME_CHARS),
            f"a display name of 1 to {MAX_NAME_CHARS} characters, without control "
            "characters or leading/trailing blanks",
        ),
        "mailbox": RequestField(
            _text(MAX_MAILBOX_CHARS, MAILBOX_PATTERN, min_chars=3),
            f"an email address of at most {MAX_MAILBOX_CHARS} characters",
        ),
        "host": RequestField(
            _text(MAX_HOST_CHARS, HOST_PATTERN),
            "a host name (imap.example.com) or an IPv4/IPv6 address, without port",
            normalise=_host,
            note=". It must resolve to public addresses only, unless the operator allows "
            "private ones.",
        ),
        "port": RequestField(
            {"type": "integer", "minimum": 1, "maximum": 65535}, "a whole number from 1 to 65535"
        ),
        "security": RequestField(
            {"type": "string", "enum": [s.value for s in Security]},
            "one of " + ", ".join(s.value for s in Security),
            normalise=Security,
        ),
        "username": RequestField(
            _text(MAX_USERNAME_CHARS),
            f"a user name of 1 to {MAX_USERNAME_CHARS} characters, without control "
            "characters or leading/trailing blanks",
        ),
        "password": RequestField(
            _SECRET_SCHEMA,
            f"a password of 1 to {MAX_PASSWORD_CHARS} characters, without line breaks",
            note=_SECRET_NOTE,
            extra_schema=_SECRET_EXTRA,
        ),
        "folders": RequestField(
            {
                "type": "array",
                "maxItems": MAX_FOLDERS,
                "uniqueItems": True,
                "items": _text(MAX_FOLDER_CHARS, FOLDER_PATTERN),
            },
            f"a list of at most {MAX_FOLDERS} distinct folder names (1 to "
            f"{MAX_FOLDER_CHARS} characters, no control characters); empty means INBOX",
            normalise=tuple,
            item_accepted=f"a folder name of 1 to {MAX_FOLDER_CHARS} characters, no "
            "control characters",
        ),
        "maxConnections": RequestField(
            {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_CONNECTIONS},
            f"a whole number from 1 to {MAX_CONNECTIONS}, or null for the default",
        ),
        "isActive": RequestField({"type": "boolean"}, "true or false"),
    }
)

#: Fields only a create request may carry (they decide how the provider logs in).
CREATE_ONLY_FIELDS: Mapping[str, RequestField] = MappingProxyType(
    {
        "providerType": RequestField(
            {"type": "string", "enum": list(PROVIDER_TYPES)},
            "one of " + ", ".join(PROVIDER_TYPES) + " (default imap); google and microsoft "
            "fill in host, port, security and the OAuth endpoints",
        ),
        "authType": RequestField(
            {"type": "string", "enum": [AUTH_PASSWORD, AUTH_OAUTH2]},
            f"{AUTH_PASSWORD} (default) or {AUTH_OAUTH2}",
            note="; with oauth2, connect it through POST /api/email/oauth/imap/initiate",
        ),
        "oauthClientId": RequestField(
            _text(MAX_URL_CHARS),
            "the OAuth client id (default: the operator's app for google/microsoft)",
        ),
        "oauthClientSecret": RequestField(
            _SECRET_SCHEMA,
            f"the OAuth client secret, 1 to {MAX_PASSWORD_CHARS} characters",
            note=_SECRET_NOTE,
            extra_schema=_SECRET_EXTRA,
        ),
        "oauthAuthorizeUrl": RequestField(
            _URL_SCHEMA,
            "the authorization endpoint, an https URL (default: the preset's)",
            normalise=_web_url,
        ),
        "oauthTokenUrl": RequestField(
            _URL_SCHEMA,
            "the token endpoint, an https URL (default: the preset's)",
            normalise=_web_url,
        ),
        "oauthScopes": RequestField(
            {
                "type": "array",
                "maxItems": MAX_SCOPES,
                "items": {"type": "string", "pattern": SCOPE_PATTERN},
            },
            f"a list of at most {MAX_SCOPES} scopes (default: the preset's)",
            normalise=tuple,
        ),
    }
)
