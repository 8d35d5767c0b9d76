"""The aiohttp application of ``email-service api`` (shell): parts, middlewares and routes.

Every request passes two middlewares:

1. ``_respond`` gives the request an id (``X-Request-Id``), binds it and the tenant to the
   log context, turns every error into the JSON error body (``problems.ApiProblem``, our
   storage errors, aiohttp's 404/405/413), adds CORS headers for allowed origins, answers
   CORS preflights, counts the request in ``/metrics`` and logs one line (method, route,
   status, time; never a body).
2. ``_authenticate`` checks the bearer token of every ``/api/v1`` call
   (``auth.TokenVerifier``) and stores the caller; handlers take the tenant from there and
   nowhere else.

Bodies are limited to ``EMAIL_SERVICE_API_MAX_BODY_BYTES`` (413 before reading when the
Content-Length says so, and while reading otherwise).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from email_service import logs
from email_service.api import content, cors, oauth_connect, providers
from email_service.api.auth import TENANT_HEADER
from email_service.api.openapi import API_PREFIX, OPENAPI_PATH, build_document
from email_service.api.parts import CALLER_KEY, PARTS, ApiParts, parts_of
from email_service.api.problems import ApiProblem, FieldProblem, invalid_fields
from email_service.api.validation import quoted_name
from email_service.errors import (
    ProviderLimitReached,
    ProviderNotFound,
    StorageConflict,
    StorageUnavailable,
)
from email_service.http.health import add_health_routes

logger = logging.getLogger(__name__)

#: Where the request's id is kept on the request.
REQUEST_ID_KEY: Any = (
    web.RequestKey("request_id", str) if hasattr(web, "RequestKey") else "email_service.request_id"
)
#: Seconds a client is asked to wait when the database is unavailable.
UNAVAILABLE_RETRY_AFTER_S = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(parts: ApiParts) -> web.Application:
    """The API with ``/health``, ``/ready``, ``/metrics`` and ``/api/openapi.json``."""
    app = web.Application(
        middlewares=[_respond, _authenticate],
        client_max_size=parts.settings.api.max_body_bytes,
    )
    app[PARTS] = parts
    app.on_response_prepare.append(_add_response_headers)
    document = build_document()

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get(OPENAPI_PATH, openapi)
    providers.add_routes(app, API_PREFIX)
    content.add_routes(app, API_PREFIX)
    oauth_connect.add_routes(app)
    add_health_routes(
        app, engine=parts.engine, redis_client=parts.redis_client, metrics=parts.metrics
    )
    return app


def _error_response(problem: ApiProblem) -> web.Response:
    return web.json_response(problem.body(), status=problem.status, headers=dict(problem.headers))


#: aiohttp's own errors, by status, as our error codes.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def _problem_for(exc: BaseException) -> ApiProblem | None:
    """The error response for an exception a handler let through; None if unexpected."""
    match exc:
        case ApiProblem():
            return exc
        case ProviderNotFound():
            return ApiProblem(404, "not_found", "no such provider for this tenant")
        case ProviderLimitReached():
            return ApiProblem(409, "provider_limit_reached", str(exc))
        case StorageConflict():
            return ApiProblem(409, "conflict", "the change conflicts with the stored data")
        case StorageUnavailable():
            return ApiProblem(
                503,
                "unavailable",
                "the database is unavailable; try again shortly",
                headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
            )
        case web.HTTPException() if exc.status >= 400:
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            message = exc.reason
            if exc.status == 413:
                message = (
                    "the request body is larger than the limit (EMAIL_SERVICE_API_MAX_BODY_BYTES)"
                )
            return ApiProblem(
                exc.status, _HTTP_CODES.get(exc.status, "http_error"), message, headers=headers
            )
    return None


@web.middleware
async def _respond(request: web.Request, handler: Handler) -> web.StreamResponse:
    parts = parts_of(request)
    started = time.monotonic()
    request_id = uuid.uuid4().hex[:16]
    request[REQUEST_ID_KEY] = request_id
    logs.bind_context(request=request_id)
    origin = request.headers.get("Origin")
    allowed = parts.settings.api.cors_origins
    response: web.StreamResponse
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        headers = cors.preflight_headers(origin, allowed)
        if headers is None:
            response = _error_response(
                ApiProblem(403, "origin_not_allowed", "this origin may not call the API")
            )
        else:
            response = web.Response(status=204, headers=headers)
    else:
        try:
            response = await _checked(request, handler, parts)
        except Exception as exc:
            problem = _problem_for(exc)
            if problem is None:
                logger.exception("request failed unexpectedly")
                problem = ApiProblem(
                    500, "internal", f"internal error; quote request id {request_id}"
                )
            elif problem.status >= 500:
                logger.warning("request failed: %s", problem)
            response = _error_response(problem)
    route = _route_name(request)
    parts.metrics.add(
        "email_service_api_requests_total",
        method=request.method,
        route=route,
        status=str(response.status),
    )
    logger.info(
        "%s %s %d %.0fms",
        request.method,
        route,
        response.status,
        (time.monotonic() - started) * 1000,
    )
    return response


#: Query parameters a route accepts; any other is refused (422), like an unknown body field.
ALLOWED_QUERY = {
    f"{API_PREFIX}/providers": frozenset({"limit", "cursor"}),
    f"{API_PREFIX}/providers/{{providerId}}/status": frozenset({"live"}),
}


def _check_query(request: web.Request) -> None:
    if not request.path.startswith(API_PREFIX + "/"):
        return
    allowed = ALLOWED_QUERY.get(_route_name(request), frozenset())
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise invalid_fields(
            [
                FieldProblem(quoted_name(name), f"unknown query parameter (accepted: {accepted})")
                for name in unknown
            ]
        )


async def _checked(request: web.Request, handler: Handler, parts: ApiParts) -> web.StreamResponse:
    _check_query(request)
    length = request.content_length
    if length is not None and length > parts.settings.api.max_body_bytes:
        raise ApiProblem(
            413,
            "payload_too_large",
            f"the request body is larger than {parts.settings.api.max_body_bytes} bytes",
        )
    return await handler(request)


async def _add_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``X-Request-Id`` and CORS headers on every answer, right before its headers are sent
    (a streamed download sends them long before its handler returns)."""
    if REQUEST_ID_KEY in request:
        response.headers["X-Request-Id"] = request[REQUEST_ID_KEY]
    if not (request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers):
        allowed = parts_of(request).settings.api.cors_origins
        response.headers.update(cors.cors_headers(request.headers.get("Origin"), allowed))


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not (
        path == API_PREFIX
        or path.startswith(API_PREFIX + "/")
        or path in oauth_connect.AUTHENTICATED_PATHS
    ):
        return await handler(request)
    caller = parts_of(request).verifier.verify(
        request.headers.get("Authorization"),
        request.headers.get(TENANT_HEADER),
        now_s=int(time.time()),
    )
    request[CALLER_KEY] = caller
    logs.bind_context(tenant=caller.tenant)
    return await handler(request)


def _route_name(request: web.Request) -> str:
    """The route template (``/api/v1/providers/{providerId}``), never the raw path."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"
