"""The OAuth2 client side (shell; the only module that imports authlib and, through it, requests).

Three calls: the authorization URL (always PKCE S256), the code exchange, and the refresh.
Every failure becomes one of our errors:

- ``invalid_grant``, ``invalid_client``, ``unauthorized_client``, ``invalid_scope``:
  ``ReauthorizationRequired`` (revoked, expired or rotated-away grant; wrong client secret).
  Retrying cannot help; a person must connect the mailbox again.
- no answer, a timeout, HTTP 5xx or 429, or a body that is not JSON:
  ``TokenEndpointUnavailable`` (transient; the caller backs off).
- any other error code: ``OAuthRequestRejected``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from email_service.errors import (
    OAuthRequestRejected,
    ReauthorizationRequired,
    TokenEndpointUnavailable,
)

#: Error codes of RFC 6749 section 5.2 that mean the grant or client is no longer good.
REAUTHORIZE_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope"}
)
#: Longest error description quoted in our messages.
MAX_DESCRIPTION_CHARS = 200


@dataclass(frozen=True)
class OAuthClientConfig:
    """One provider's OAuth client: endpoints, credentials, scopes."""

    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str | None = field(repr=False)
    scopes: tuple[str, ...]
    authorize_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IssuedTokens:
    """What the token endpoint answered; ``refresh_token`` is None when it did not rotate."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in_s: int | None


def _session(config: OAuthClientConfig, redirect_uri: str | None = None) -> OAuth2Session:
    return OAuth2Session(
        client_id=config.client_id,
        client_secret=config.client_secret,
        token_endpoint_auth_method="client_secret_post" if config.client_secret else "none",
        scope=" ".join(config.scopes) or None,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )


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
        code = str(exc.error or "")
        description = str(exc.description or "")[:MAX_DESCRIPTION_CHARS]
        message = f"token endpoint: {code}" + (f" ({description})" if description else "")
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
        raise TokenEndpointUnavailable(f"token endpoint: {exc}") from exc
    if not isinstance(token, Mapping) or not token.get("access_token"):
        raise TokenEndpointUnavailable("token endpoint answered without an access token")
    return token


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
