"""Request validation of the provider API: every rule, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from email_service.api.fields import MAX_FOLDERS, normalise_host
from email_service.api.problems import ApiProblem
from email_service.api.validation import (
    validate_create,
    validate_flag,
    validate_provider_id,
    validate_resync,
    validate_update,
)
from email_service.model import KEEP, Security

VALID: dict[str, Any] = {
    "name": "Support",
    "mailbox": "support@example.com",
    "host": "IMAP.Example.com",
    "port": 993,
    "security": "tls",
    "username": "support@example.com",
    "password": " pass with spaces ",
}


def problems(call: Any, body: Any) -> dict[str, str]:
    with pytest.raises(ApiProblem) as raised:
        call(body)
    assert raised.value.status == 422
    return {p.field: p.message for p in raised.value.fields}


def test_a_valid_create_is_normalised() -> None:
    valid = validate_create({**VALID, "folders": ["INBOX", "Support/Tier 2"], "isActive": False})
    assert valid.host == "imap.example.com"
    assert valid.security is Security.TLS
    assert valid.folders == ("INBOX", "Support/Tier 2")
    assert valid.is_active is False
    assert valid.max_connections is None
    assert valid.password == " pass with spaces "
    assert "pass with spaces" not in repr(valid)
    new = valid.to_new_provider("acme")
    assert (new.tenant, new.endpoint.host, new.endpoint.port) == ("acme", "imap.example.com", 993)
    assert new.endpoint.tls_ca_file is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": "tab\tinside"}, "name"),
        ({"name": "trailing "}, "name"),
        ({"mailbox": "a@b@c"}, "mailbox"),
        ({"mailbox": "with space@example.com"}, "mailbox"),
        ({"host": "-bad.example.com"}, "host"),
        ({"host": "a..b"}, "host"),
        ({"host": "under_score.example.com"}, "host"),
        ({"host": "2130706433"}, "host"),
        ({"host": "0x7f.1"}, "host"),
        ({"host": "[::1]"}, "host"),
        ({"host": "x" * 254}, "host"),
        ({"host": 42}, "host"),
        ({"port": 65536}, "port"),
        ({"port": 1.5}, "port"),
        ({"port": False}, "port"),
        ({"security": "TLS"}, "security"),
        ({"username": ""}, "username"),
        ({"password": ""}, "password"),
        ({"password": "nul\x00"}, "password"),
        ({"password": "x" * 1025}, "password"),
        ({"folders": [""]}, "folders[0]"),
        ({"folders": ["ok", 3]}, "folders[1]"),
        ({"folders": ["a\nb"]}, "folders[0]"),
        ({"folders": ["x"] * (MAX_FOLDERS + 1)}, "folders"),
        ({"maxConnections": 101}, "maxConnections"),
        ({"maxConnections": True}, "maxConnections"),
        ({"isActive": "yes"}, "isActive"),
        ({"tlsCaFile": "/etc/ca.pem"}, "tlsCaFile"),
        ({"id": "chosen"}, "id"),
    ],
    ids=lambda value: str(value) if not isinstance(value, dict) else next(iter(value)),
)
def test_each_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    found = problems(validate_create, {**VALID, **change})
    assert set(found) == {field}
    assert found[field]


def test_every_missing_field_is_named_and_values_are_never_echoed() -> None:
    assert set(problems(validate_create, {})) == {
        "name",
        "mailbox",
        "host",
        "port",
        "security",
        "username",
        "password",
    }
    secret = "s3cret-value-\n"
    found = problems(validate_create, {**VALID, "password": secret, "passwrd": secret})
    assert all("s3cret" not in message for message in found.values())


@pytest.mark.parametrize("body", [None, [], "text", 3], ids=["null", "list", "string", "number"])
def test_the_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(ApiProblem) as raised:
        validate_create(body)
    assert raised.value.status == 400


def test_update_keeps_what_is_not_sent() -> None:
    patch = validate_update({"port": 143, "security": "starttls", "maxConnections": None})
    assert patch.changes.port == 143
    assert patch.changes.security is Security.STARTTLS
    assert patch.changes.max_connections is None
    assert patch.changes.name is KEEP and patch.changes.folders is KEEP
    assert patch.password is None
    assert validate_update({"password": "new"}).password == "new"
    assert set(problems(validate_update, {})) == {"body"}
    assert set(problems(validate_update, {"host": "", "color": "red"})) == {"host", "color"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mail.Example.COM", "mail.example.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("::FFFF:127.0.0.1", "::ffff:7f00:1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("localhost", "localhost"),
        ("127.1", None),
        ("example.com.", None),
        ("exa mple.com", None),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
    ids=[
        "lowercased",
        "ipv4",
        "mapped",
        "ipv6",
        "single-label",
        "numeric-shorthand",
        "trailing-dot",
        "space",
        "punycode",
    ],
)
def test_normalise_host(value: str, expected: str | None) -> None:
    assert normalise_host(value) == expected


@pytest.mark.parametrize(
    ("body", "expected", "field"),
    [
        (None, None, None),
        ({}, None, None),
        ({"folders": ["Sent"]}, ("Sent",), None),
        ({"folders": []}, None, "folders"),
        ({"folders": ["Junk"]}, None, "folders[0]"),
        ({"folders": "Sent"}, None, "folders"),
        ({"all": True}, None, "all"),
    ],
    ids=["no-body", "empty", "one", "empty-list", "unknown-folder", "not-list", "unknown-field"],
)
def test_resync_folders(body: Any, expected: tuple[str, ...] | None, field: str | None) -> None:
    if field is None:
        assert validate_resync(body, ("INBOX", "Sent")) == expected
    else:
        assert field in problems(lambda b: validate_resync(b, ("INBOX", "Sent")), body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("true", True), ("false", False)],
    ids=["absent", "true", "false"],
)
def test_flags(value: str | None, expected: bool) -> None:
    assert validate_flag("live", value) is expected


def test_bad_flag_and_provider_ids() -> None:
    assert set(problems(lambda v: validate_flag("live", v), "1")) == {"live"}
    assert validate_provider_id("0b7c7a4e-5b7e-4d56-9a53-0d8f2b0a0c11")
    assert not validate_provider_id("")
    assert not validate_provider_id("x" * 65)
    assert not validate_provider_id("bad\x00id")
