"""The ``email-service api`` process (shell): serve the API until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from email_service.api.app import build_app
from email_service.api.parts import ApiParts
from email_service.http.server import HttpLimits, listening_socket, serve_app

logger = logging.getLogger(__name__)

#: Seconds in-flight requests get to finish on shutdown (IMAP calls are bounded separately).
SHUTDOWN_GRACE_S = 10


def run_api(parts: ApiParts, *, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104
    """Serve the provider API, ``/health``, ``/ready`` and ``/metrics`` on ``port``."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = await serve_app(
            build_app(parts),
            listening_socket(host, port),
            limits=HttpLimits.of(parts.settings.process),
            metrics=parts.metrics,
            shutdown_timeout_s=SHUTDOWN_GRACE_S,
        )
        logger.info("api listening on port %d (pid %d)", port, os.getpid())
        try:
            await stop.wait()
        finally:
            logger.info("api stopping")
            await runner.cleanup()
            parts.close()

    asyncio.run(serve())
    logger.info("api stopped")
