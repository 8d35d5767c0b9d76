"""The worker role: supervises folder listeners and serves health endpoints (shell).

A supervisor thread loads the active providers every ``IMAP_PROVIDER_REFRESH_MS``
(jittered), starts a listener per configured folder (spread over
``IMAP_STARTUP_STAGGER_MS``), and stops or restarts listeners whose provider was removed,
deactivated or changed. One listener's failure never touches another's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import threading
from dataclasses import dataclass

from sqlalchemy import Engine

from email_service.errors import EmailServiceError, PermanentError
from email_service.folder_sync import ListenerContext
from email_service.http_health import run_health_server
from email_service.imap_session import PasswordLogin
from email_service.listener import FolderListener
from email_service.metrics import Metrics
from email_service.model import ProviderConfig
from email_service.publisher import EventPublisher, connect_redis
from email_service.secretbox import SecretBox
from email_service.settings import Settings
from email_service.store.cursors import CursorStore
from email_service.store.engine import make_engine
from email_service.store.providers import ProviderStore
from email_service.store.secrets import SecretStore
from email_service.supervision import ListenerId, plan_listeners, stagger_delay_s

logger = logging.getLogger(__name__)

#: Seconds the worker waits for its listeners to finish on shutdown; the Helm chart's
#: terminationGracePeriodSeconds must stay above this.
SHUTDOWN_TIMEOUT_S = 20


@dataclass
class WorkerParts:
    """Everything the worker talks to, built once from settings."""

    settings: Settings
    engine: Engine
    providers: ProviderStore
    secrets: SecretStore
    listener_context: ListenerContext

    @classmethod
    def build(cls, settings: Settings) -> WorkerParts:
        engine = make_engine(settings.database_url)
        redis_client = connect_redis(settings.require_redis_url())
        secrets = SecretStore(engine, SecretBox(settings.require_secret_keys()))
        providers = ProviderStore(engine)

        def load_login(provider: ProviderConfig) -> PasswordLogin:
            if provider.auth_type != "password":
                raise PermanentError(
                    f"auth_type {provider.auth_type!r} is not supported by this worker yet"
                )
            password = secrets.load_secret(provider.tenant, provider.password_secret_name())
            return PasswordLogin(provider.username, password)

        context = ListenerContext(
            settings=settings,
            cursors=CursorStore(engine),
            providers=providers,
            publisher=EventPublisher(
                redis_client,
                stream=settings.event_stream,
                dlq_stream=settings.dlq_stream,
                mark_ttl_s=settings.published_mark_ttl_s,
            ),
            load_login=load_login,
            metrics=Metrics(),
        )
        return cls(settings, engine, providers, secrets, context)


class Supervisor:
    """Keeps the running listeners in line with the provider tables."""

    def __init__(self, parts: WorkerParts) -> None:
        self._parts = parts
        self._settings = parts.settings
        self._listeners: dict[ListenerId, FolderListener] = {}
        self._rng = random.Random()
        self.stop_event = threading.Event()
        self.refreshed = threading.Event()

    @property
    def listeners(self) -> dict[ListenerId, FolderListener]:
        return dict(self._listeners)

    def refresh(self) -> None:
        providers = self._parts.providers.load_active_providers()
        running = {lid: lst.provider.updated_at for lid, lst in self._listeners.items()}
        changes = plan_listeners(running, providers)
        for listener_id in changes.stop:
            self._listeners.pop(listener_id).stop()
        for index, (provider, folder) in enumerate(changes.start):
            delay = stagger_delay_s(
                index, len(changes.start), self._settings.startup_stagger_ms, self._rng.random()
            )
            listener = FolderListener(
                provider,
                folder,
                provider.lease_fence,
                self._parts.listener_context,
                start_delay_s=delay,
            )
            self._listeners[(provider.tenant, provider.id, folder)] = listener
            listener.start()
        if changes.start or changes.stop:
            logger.info(
                "listeners: %d started, %d stopped, %d running",
                len(changes.start),
                len(changes.stop),
                len(self._listeners),
            )
        self._update_gauges()
        self.refreshed.set()

    def run(self) -> None:
        """Refresh until stopped; then stop every listener."""
        interval_s = self._settings.provider_refresh_ms / 1000
        while not self.stop_event.is_set():
            try:
                self.refresh()
            except EmailServiceError as exc:
                logger.warning("provider refresh failed: %s", exc)
            except Exception:
                logger.exception("provider refresh failed unexpectedly")
            jitter = 1 + self._settings.timer_jitter_pct * (2 * self._rng.random() - 1)
            self.stop_event.wait(interval_s * jitter)
        self.stop_all()

    def stop_all(self) -> None:
        listeners = list(self._listeners.values())
        for listener in listeners:
            listener.stop()
        for listener in listeners:
            if not listener.join(SHUTDOWN_TIMEOUT_S):
                logger.warning("listener %s did not stop in time", listener.key)
        self._listeners.clear()

    def _update_gauges(self) -> None:
        metrics = self._parts.listener_context.metrics
        counts: dict[str, int] = {}
        for listener in self._listeners.values():
            counts[listener.state] = counts.get(listener.state, 0) + 1
        for state in (
            "starting",
            "connecting",
            "syncing",
            "idle",
            "polling",
            "backoff",
            "parked",
            "stopped",
        ):
            metrics.set("email_service_listeners", counts.get(state, 0), state=state)


def run_worker(settings: Settings, *, http_port: int) -> None:
    """Run until SIGTERM or SIGINT."""
    parts = WorkerParts.build(settings)
    supervisor = Supervisor(parts)
    thread = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
    logger.info("worker %s starting (pid %d)", settings.worker_id, os.getpid())
    thread.start()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = await run_health_server(
            port=http_port,
            engine=parts.engine,
            redis_client=parts.listener_context.publisher.client,
            metrics=parts.listener_context.metrics,
        )
        try:
            await stop.wait()
        finally:
            logger.info("worker stopping")
            supervisor.stop_event.set()
            await asyncio.to_thread(thread.join, SHUTDOWN_TIMEOUT_S + 5)
            await runner.cleanup()
            parts.engine.dispose()

    asyncio.run(serve())
    logger.info("worker stopped")
