"""What reaches a tenant of a server's answer: IMAP text and OAuth error fields, sanitised."""

from __future__ import annotations

import imaplib

import pytest

from email_service.imap.session import server_text
from email_service.oauth.client import oauth_error_text


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        (imaplib.IMAP4.error(b"[AUTHENTICATIONFAILED] Authentication failed."),
         "[AUTHENTICATIONFAILED] Authentication failed."),
        (imaplib.IMAP4.abort("unexpected response: b'INFO {\"server_id\":\"x\"}'"),
         "the server sent something that is not an IMAP response"),
        (imaplib.IMAP4.abort("socket error: unterminated line: b'J\\x00\\x00\\x00\\n'"),
         "the server sent something that is not an IMAP response"),
        (b"* BYE going \x1b[31maway\x00", "* BYE going ?[31maway?"),
        ("x" * 500, "x" * 200),
    ],
    ids=["imap-no", "nats-banner", "mariadb-handshake", "control-bytes", "bounded"],
)  # fmt: skip
def test_server_text_keeps_imap_responses_and_drops_other_bytes(said: object, shown: str) -> None:
    assert server_text(said) == shown


@pytest.mark.parametrize(
    ("value", "limit", "shown"),
    [
        ("invalid_grant", 64, "invalid_grant"),
        ({"nested": "INTERNAL"}, 64, ""),
        (None, 64, ""),
        ('bad "quoted" \\ text\x1b[31m\x00', 200, "bad quoted  text[31m"),
        ("é" + "d" * 300, 200, "d" * 200),
    ],
    ids=["standard", "not-a-string", "absent", "forbidden-characters", "bounded"],
)
def test_oauth_error_fields_keep_rfc_6749_characters_only(
    value: object, limit: int, shown: str
) -> None:
    assert oauth_error_text(value, limit) == shown
