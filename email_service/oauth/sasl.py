"""SASL for OAuth2 logins over IMAP: which mechanism, and what to send (core).

XOAUTH2 is what Gmail and Microsoft 365 document; OAUTHBEARER (RFC 7628) is the standard
one. ``IMAP_OAUTH_AUTH_MECHANISM`` picks one; unset, the server's CAPABILITY decides, with
XOAUTH2 first because every large provider offers it.
"""

from __future__ import annotations

from email_service.errors import PermanentError

XOAUTH2 = "XOAUTH2"
OAUTHBEARER = "OAUTHBEARER"
#: In order of preference when the setting leaves the choice to the server.
PREFERENCE = (XOAUTH2, OAUTHBEARER)


def choose_mechanism(configured: str | None, capabilities: tuple[str, ...]) -> str:
    """The SASL mechanism to log in with, or ``PermanentError`` when the server has none."""
    if configured:
        return configured.upper()
    offered = {c.upper() for c in capabilities}
    for mechanism in PREFERENCE:
        if f"AUTH={mechanism}" in offered:
            return mechanism
    raise PermanentError(
        "the server offers neither AUTH=XOAUTH2 nor AUTH=OAUTHBEARER, so an OAuth token "
        "cannot be used; set IMAP_OAUTH_AUTH_MECHANISM if its CAPABILITY is incomplete"
    )


def initial_response(mechanism: str, username: str, access_token: str) -> bytes:
    """The client's first message (before base64) for ``mechanism``."""
    if mechanism == XOAUTH2:
        return f"user={username}\x01auth=Bearer {access_token}\x01\x01".encode()
    if mechanism == OAUTHBEARER:
        authzid = username.replace("=", "=3D").replace(",", "=2C")
        return f"n,a={authzid},\x01auth=Bearer {access_token}\x01\x01".encode()
    raise PermanentError(f"unknown OAuth SASL mechanism {mechanism}")


def error_acknowledgement(mechanism: str) -> bytes:
    """What a client answers to the server's error challenge, so the server sends NO.

    RFC 7628 section 3.2.3: a single %x01 for OAUTHBEARER; XOAUTH2 takes an empty line.
    """
    return b"\x01" if mechanism == OAUTHBEARER else b""
