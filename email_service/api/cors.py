"""Cross-origin rules for the tenant UI's browser calls (core: request headers in, headers out).

Only origins listed in ``EMAIL_SERVICE_API_CORS_ORIGINS`` (or every origin, with ``*``) get
CORS headers. Calls carry a bearer token, never cookies, so credentials are not allowed and
a listed origin gains nothing a script elsewhere could not do with the same token.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Methods the API answers to.
ALLOWED_METHODS = "GET, POST, PATCH, DELETE"
#: Request headers a browser may send: the token, JSON bodies, the service-token tenant.
ALLOWED_HEADERS = "Authorization, Content-Type, X-Tenant-Id, X-Request-Id"
#: Response headers a script may read beyond the simple ones.
EXPOSED_HEADERS = "Location, Retry-After, X-Request-Id"
#: How long a browser may cache a preflight answer (seconds); ten minutes keeps changes quick.
PREFLIGHT_MAX_AGE_S = 600


def is_allowed_origin(origin: str | None, allowed: Sequence[str]) -> bool:
    return origin is not None and ("*" in allowed or origin.lower() in allowed)


def cors_headers(origin: str | None, allowed: Sequence[str]) -> dict[str, str]:
    """Headers for an actual (non-preflight) response; empty unless the origin is allowed."""
    if not is_allowed_origin(origin, allowed):
        return {}
    assert origin is not None
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        "Vary": "Origin",
    }


def preflight_headers(origin: str | None, allowed: Sequence[str]) -> dict[str, str] | None:
    """Headers answering a preflight ``OPTIONS``, or None when the origin is not allowed."""
    if not is_allowed_origin(origin, allowed):
        return None
    return {
        **cors_headers(origin, allowed),
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
    }
