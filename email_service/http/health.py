"""``/health``, ``/ready`` and ``/metrics`` for both roles (shell; aiohttp).

``/health`` answers while the process runs; ``/ready`` only while the database and Redis
answer too; ``/metrics`` is the Prometheus text format.
"""

from __future__ import annotations

import asyncio

import redis
from aiohttp import web
from sqlalchemy import Engine

from email_service.errors import EmailServiceError
from email_service.http.server import HttpLimits, listening_socket, serve_app
from email_service.metrics import Metrics
from email_service.publish.publisher import check_redis
from email_service.store.engine import check_database

#: Seconds a readiness check may take before it counts as "not ready".
READY_CHECK_TIMEOUT_S = 3


def build_health_app(
    *, engine: Engine, redis_client: redis.Redis[bytes], metrics: Metrics
) -> web.Application:
    app = web.Application()
    add_health_routes(app, engine=engine, redis_client=redis_client, metrics=metrics)
    return app


def add_health_routes(
    app: web.Application, *, engine: Engine, redis_client: redis.Redis[bytes], metrics: Metrics
) -> None:
    """Add ``/health``, ``/ready`` and ``/metrics`` to ``app`` (the worker's, or the API's)."""

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_request: web.Request) -> web.Response:
        checks: dict[str, str] = {}
        for name, check in (
            ("database", lambda: check_database(engine)),
            ("redis", lambda: check_redis(redis_client)),
        ):
            try:
                await asyncio.wait_for(asyncio.to_thread(check), READY_CHECK_TIMEOUT_S)
                checks[name] = "ok"
            except (EmailServiceError, TimeoutError) as exc:
                checks[name] = f"unavailable: {type(exc).__name__}"
        ok = all(value == "ok" for value in checks.values())
        return web.json_response(
            {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
        )

    async def metrics_text(_request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain")

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics_text)


async def run_health_server(
    *,
    port: int,
    engine: Engine,
    redis_client: redis.Redis[bytes],
    metrics: Metrics,
    limits: HttpLimits,
    host: str = "0.0.0.0",  # noqa: S104 - health endpoints listen on the pod's IP
) -> web.AppRunner:
    """Start serving (with ``http_server``'s limits); the caller awaits ``runner.cleanup()``."""
    return await serve_app(
        build_health_app(engine=engine, redis_client=redis_client, metrics=metrics),
        listening_socket(host, port),
        limits=limits,
        metrics=metrics,
    )
