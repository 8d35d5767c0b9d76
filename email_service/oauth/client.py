"""The OAuth2 client side (shell; the only module that imports authlib and, through it, requests).

Three calls: the authorization URL (always PKCE S256), the code exchange, and the refresh.
Every failure becomes one of our errors:

- ``invalid_grant``, ``invalid_client``, ``unauthorized_client``, ``invalid_scope``:
  ``ReauthorizationRequired`` (revoked, expired or rotated-away grant; wrong client secret).
  Retrying cannot help; a person must connect the mailbox again.
- no answer, a timeout, HTTP 5xx or 429, or a body that is not JSON:
  ``TokenEndpointUnavailable`` (transient; the caller backs off).
- any other error code, or a redirect: ``OAuthRequestRejected``.
- a token URL that is not https (unless private hosts are allowed), or whose host resolves
  to an address the server-side request forgery guard refuses: ``HostRefused``, before
  anything is sent. The URL is checked at every request (``oauth.transport``).

Nothing of the endpoint's answer reaches a message but the standard error fields of RFC
6749 (5.2): ``error`` and ``error_description``, cut to the characters the RFC allows
(printable ASCII without ``"`` and ``\\``) and bounded. The rest of a body, a banner or a
page is never quoted: it may come from a service the tenant should not see.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from email_service.errors import (
    HostRefused,
    OAuthRequestRejected,
    ReauthorizationRequired,
    TokenEndpointUnavailable,
)
from email_service.oauth.transport import checked_session
from email_service.security.ssrf import decide_token_url

#: Error codes of RFC 6749 section 5.2 that mean the grant or client is no longer good.
REAUTHORIZE_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope"}
)
#: Longest error description quoted in our messages.
MAX_DESCRIPTION_CHARS = 200
#: Longest error code quoted; the codes of RFC 6749 are under 30 characters.
MAX_ERROR_CODE_CHARS = 64
#: Characters outside what RFC 6749 (5.2) allows in ``error`` and ``error_description``.
NOT_OAUTH_ERROR_TEXT = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


@dataclass(frozen=True)
class OAuthClientConfig:
    """One provider's OAuth client: endpoints, credentials, scopes."""

    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str | None = field(repr=False)
    scopes: tuple[str, ...]
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    #: ``IMAP_ALLOW_PRIVATE_HOSTS``: whether the token endpoint may be on a private address
    #: (and plain http).
    allow_private_hosts: bool = False


@dataclass(frozen=True)
class IssuedTokens:
    """What the token endpoint answered; ``refresh_token`` is None when it did not rotate."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in_s: int | None


def _session(config: OAuthClientConfig, redirect_uri: str | None = None) -> OAuth2Session:
    session = OAuth2Session(
        client_id=config.client_id,
        client_secret=config.client_secret,
        token_endpoint_auth_method="client_secret_post" if config.client_secret else "none",
        scope=" ".join(config.scopes) or None,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    checked_session(session, allow_private_hosts=config.allow_private_hosts)
    return session


def _require_usable_token_url(config: OAuthClientConfig) -> None:
    refusal = decide_token_url(config.token_url, allow_private=config.allow_private_hosts)
    if refusal is not None:
        raise HostRefused(f"the token URL {refusal}")


def authorization_url(
    config: OAuthClientConfig, *, redirect_uri: str, state: str, code_verifier: str
) -> str:
    """Where to send the browser: the provider's consent page with PKCE S256 and ``state``."""
    with _session(config, redirect_uri) as session:
        url, _state = session.create_authorization_url(
            config.authorize_url,
            state=state,
            code_verifier=code_verifier,
            **dict(config.authorize_params),
        )
    return str(url)


def exchange_code(
    config: OAuthClientConfig,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    timeout_s: float,
) -> IssuedTokens:
    """Trade the authorization code (and the PKCE verifier) for tokens."""
    _require_usable_token_url(config)
    with _session(config, redirect_uri) as session:
        token = _call_token_endpoint(
            lambda: session.fetch_token(
                config.token_url,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                timeout=timeout_s,
            )
        )
    return _issued(token)


def refresh_access_token(
    config: OAuthClientConfig, *, refresh_token: str, timeout_s: float
) -> IssuedTokens:
    """A new access token (and perhaps a new refresh token) for ``refresh_token``."""
    _require_usable_token_url(config)
    with _session(config) as session:
        token = _call_token_endpoint(
            lambda: session.refresh_token(
                config.token_url, refresh_token=refresh_token, timeout=timeout_s
            )
        )
    return _issued(token)


def _call_token_endpoint(call: Any) -> Mapping[str, Any]:
    try:
        token = call()
    except OAuthError as exc:
        code = oauth_error_text(exc.error, MAX_ERROR_CODE_CHARS)
        description = oauth_error_text(exc.description, MAX_DESCRIPTION_CHARS)
        message = f"token endpoint: {code or 'an error without a standard code'}" + (
            f" ({description})" if description else ""
        )
        if code in REAUTHORIZE_ERRORS:
            raise ReauthorizationRequired(message) from exc
        raise OAuthRequestRejected(message) from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "no"
        if isinstance(status, int) and 400 <= status < 500 and status != 429:
            raise OAuthRequestRejected(f"token endpoint answered HTTP {status}") from exc
        raise TokenEndpointUnavailable(f"token endpoint answered HTTP {status}") from exc
    except requests.RequestException as exc:
        raise TokenEndpointUnavailable(
            f"token endpoint unreachable ({type(exc).__name__})"
        ) from exc
    except ValueError as exc:  # a body that is not a JSON object
        raise TokenEndpointUnavailable("token endpoint answered something not JSON") from exc
    if not isinstance(token, Mapping) or not token.get("access_token"):
        raise TokenEndpointUnavailable("token endpoint answered without an access token")
    return token


def oauth_error_text(value: object, limit: int) -> str:
    """An ``error`` or ``error_description`` fit to quote: RFC 6749's characters, bounded."""
    if not isinstance(value, str):
        return ""
    return NOT_OAUTH_ERROR_TEXT.sub("", value)[:limit].strip()


def _issued(token: Mapping[str, Any]) -> IssuedTokens:
    expires_in = token.get("expires_in")
    try:
        expires_in_s = None if expires_in is None else int(expires_in)
    except (TypeError, ValueError):
        expires_in_s = None
    refresh = token.get("refresh_token")
    return IssuedTokens(
        access_token=str(token["access_token"]),
        refresh_token=str(refresh) if refresh else None,
        expires_in_s=expires_in_s,
    )
