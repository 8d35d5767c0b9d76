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
import time
import uuid
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from email_service.contract.formats import tenant_id_problem
from email_service.credentials.tokens import TokenManager
from email_service.errors import EmailServiceError, StorageUnavailable
from email_service.http.health import run_health_server
from email_service.http.server import HttpLimits
from email_service.imap.logins import LoginSource
from email_service.imap.session import warn_if_tls_unverified
from email_service.ingest.parse_pool import EntryBuilder
from email_service.metrics import Metrics
from email_service.model import ProviderConfig
from email_service.publish.gate import PublishGate
from email_service.publish.publisher import EventPublisher, connect_redis
from email_service.security.secretbox import SecretBox
from email_service.settings import MS_PER_S, Settings
from email_service.store.connection_records import ConnectionRecordStore
from email_service.store.cursors import CursorStore
from email_service.store.engine import make_engine
from email_service.store.leases import LeaseStore, LeaseView
from email_service.store.oauth_grants import OAuthGrantStore
from email_service.store.providers import ProviderStore
from email_service.store.secrets import SecretStore
from email_service.sync.budget import (
    ConnectionPlan,
    connections_to_record,
    demand_of,
    plan_connections,
    plan_tenant_share,
)
from email_service.sync.connection_loop import ConnectionLoop
from email_service.sync.context import ListenerContext
from email_service.sync.folder_machine import FolderState
from email_service.sync.listener import FolderListener
from email_service.sync.poller import FolderPoller
from email_service.sync.slots import ConnectionSlots
from email_service.worker.fair_share import (
    lease_must_be_dropped,
    pick_to_release,
    pick_to_take,
    plan_share,
)
from email_service.worker.supervision import (
    ListenerId,
    ListenerSpec,
    ProviderRef,
    plan_listeners,
    plan_specs,
    stagger_delay_s,
)

logger = logging.getLogger(__name__)

#: Every state a connection reports, for the gauge (zeros are exported too).
LISTENER_STATES = tuple(FolderState)
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
    #: This process's name in leases: the configured id plus a random suffix, so a restarted
    #: process never mistakes its predecessor's leases for its own.
    worker_id: str

    @classmethod
    def build(cls, settings: Settings) -> WorkerParts:
        warn_if_tls_unverified(settings.imap)
        engine = make_engine(settings.store.database_url)
        redis_client = connect_redis(settings.require_redis_url())
        secrets = SecretStore(engine, SecretBox(settings.require_secret_keys()))
        providers = ProviderStore(engine)

        worker_id = f"{settings.process.worker_id}-{uuid.uuid4().hex[:6]}"
        metrics = Metrics()
        grants = OAuthGrantStore(engine, secrets)
        tokens = TokenManager(
            grants,
            secrets,
            settings.oauth,
            allow_private_hosts=settings.imap.allow_private_hosts,
            owner=worker_id,
            metrics=metrics,
        )
        logins = LoginSource(settings.imap, secrets, tokens)
        context = ListenerContext(
            settings=settings,
            cursors=CursorStore(engine),
            providers=providers,
            publisher=EventPublisher(
                redis_client,
                stream=settings.streams.event_stream,
                dlq_stream=settings.streams.dlq_stream,
                mark_ttl_s=settings.streams.published_mark_ttl_s,
            ),
            load_login=logins.login_for,
            metrics=metrics,
            builder=EntryBuilder(settings.process.parse_processes),
            gate=PublishGate(redis_client, settings.streams, metrics),
        )
        return cls(settings, engine, providers, secrets, context, worker_id)


class Supervisor:
    """Holds this worker's fair share of provider leases and runs their connections.

    One tick every ``min(IMAP_PROVIDER_REFRESH_MS, IMAP_LEASE_TTL_MS / 3)`` (jittered):

    1. heartbeat and renew every lease it holds (by the database clock); a lease that did
       not renew was taken by another worker: its connections stop. When renewals keep
       failing (database down), every connection stops before the leases can expire.
    2. every ``IMAP_PROVIDER_REFRESH_MS``: load the active, unpaused providers and the live
       worker count; give back leases above the fair share, take free or expired ones up to
       it, release leases of providers that were removed or deactivated.
       Then plan the connections of the held providers (``budget``) within each tenant's
       share of ``IMAP_MAX_CONNECTIONS_PER_TENANT`` across all workers, and record on the
       lease rows what the plan may hold, before any of it is opened
       (``connection_records``: in one transaction with reading the others' records).
    3. start, stop or restart connections so they match the plan (``supervision``); a
       connection whose thread ended on its own is started again. Records that went down
       are written once the connections above them have stopped.
    """

    def __init__(self, parts: WorkerParts) -> None:
        self._parts = parts
        self._settings = parts.settings
        self._leases = LeaseStore(parts.engine)
        self._worker_id = parts.worker_id
        self._held: dict[ProviderRef, int] = {}
        self._providers: list[ProviderConfig] = []
        #: Providers left out for a tenant id that is not a UUID (logged once each).
        self._refused: set[str] = set()
        self._records = ConnectionRecordStore(parts.engine)
        #: The connection plan of the held providers, made (and recorded) at the last refresh.
        self._plans: dict[str, ConnectionPlan] = {}
        #: What this worker last wrote on each held lease row (``lease_connections``).
        self._recorded: dict[ProviderRef, int] = {}
        #: Shared connections of each tenant's visiting providers (``budget`` rule 4).
        self._slots: dict[str, ConnectionSlots] = {}
        self._listeners: dict[ListenerId, tuple[Hashable, ConnectionLoop]] = {}
        self._rng = random.Random()
        self._ttl_ms = round(self._settings.leases.lease_ttl_s * MS_PER_S)  # the store counts in ms
        self._last_renewal_sent: float | None = None
        self._next_refresh = 0.0
        self.stop_event = threading.Event()
        self.refreshed = threading.Event()
        parts.listener_context.metrics.add_collector(self._update_gauges)

    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def listeners(self) -> dict[ListenerId, ConnectionLoop]:
        return {lid: loop for lid, (_version, loop) in self._listeners.items()}

    @property
    def held(self) -> dict[ProviderRef, int]:
        return dict(self._held)

    def tick(self) -> None:
        now = time.monotonic()
        self._renew(now)
        if now >= self._next_refresh:
            self._rebalance()
            interval_s = self._settings.leases.provider_refresh_s
            self._next_refresh = now + interval_s * self._jitter()
            self.refreshed.set()
        self._reconcile()

    def run(self) -> None:
        """Tick until stopped; then stop every connection and release the leases."""
        tick_s = min(
            self._settings.leases.provider_refresh_s, self._settings.leases.lease_ttl_s / 3
        )
        while not self.stop_event.is_set():
            try:
                self.tick()
            except EmailServiceError as exc:
                logger.warning("supervisor tick failed: %s", exc)
            except Exception:
                logger.exception("supervisor tick failed unexpectedly")
            self.stop_event.wait(tick_s * self._jitter())
        self.shutdown()

    def shutdown(self) -> None:
        self._stop_listeners(list(self._listeners))
        try:
            released = self._leases.release_leases(self._worker_id)
            self._leases.remove_worker(self._worker_id)
            logger.info("released %d leases", released)
        except EmailServiceError as exc:
            logger.warning("could not release leases on shutdown (they expire): %s", exc)
        self._held.clear()

    # -- leases ---------------------------------------------------------------------------

    def _renew(self, now: float) -> None:
        try:
            self._leases.heartbeat(self._worker_id, self._ttl_ms)
            renewed = self._leases.renew_leases(self._worker_id, self._ttl_ms)
        except StorageUnavailable as exc:
            since = now - (self._last_renewal_sent or now)
            if self._held and lease_must_be_dropped(
                since_last_renewal_s=since, lease_ttl_s=self._settings.leases.lease_ttl_s
            ):
                logger.error(
                    "leases not renewed for %.1fs (%s): stopping all listeners", since, exc
                )
                self._drop_held(list(self._held))
            raise
        self._last_renewal_sent = now
        lost = [ref for ref, fence in self._held.items() if renewed.get(ref) != fence]
        if lost:
            logger.warning("%d leases were taken by other workers", len(lost))
            self._drop_held(lost)
        strays = [ref for ref in renewed if ref not in self._held]
        if strays:
            self._leases.release_leases(self._worker_id, strays)

    def _rebalance(self) -> None:
        self._providers = self._monitorable(self._parts.providers.load_active_providers())
        active = {(p.tenant, p.id) for p in self._providers}
        gone = [ref for ref in self._held if ref not in active]
        if gone:
            self._drop_held(gone)
            self._leases.release_leases(self._worker_id, gone)
        views = self._leases.list_leases()
        holdings = Counter(v.owner for v in views if v.owner and not v.free)
        holdings[self._worker_id] = len(self._held)
        decision = plan_share(
            active_total=len(views),
            live_workers=self._leases.count_live_workers(),
            holdings=holdings,
            me=self._worker_id,
            free=sum(1 for v in views if v.free and (v.tenant, v.provider_id) not in self._held),
        )
        if decision.release:
            surplus = pick_to_release(list(self._held), decision.release)
            self._drop_held(surplus)
            self._leases.release_leases(self._worker_id, surplus)
            logger.info("gave back %d leases (target %d)", len(surplus), decision.target)
        if decision.take:
            free = [
                (v.tenant, v.provider_id)
                for v in views
                if v.free
                and (v.tenant, v.provider_id) in active
                and (v.tenant, v.provider_id) not in self._held
            ]
            taken = 0
            for ref in pick_to_take(free, self._rng):
                fence = self._leases.take_lease(ref, self._worker_id, self._ttl_ms)
                if fence is not None:
                    self._held[ref] = fence
                    taken += 1
                    if taken >= decision.take:
                        break
            if taken:
                logger.info(
                    "took %d leases (holding %d, target %d)",
                    taken,
                    len(self._held),
                    decision.target,
                )
        self._plan_connections(views)

    def _plan_connections(self, views: list[LeaseView]) -> None:
        """Plan the held providers' connections within each tenant's share of the cap, and
        record them (the higher of the old and new record, until the old ones stop)."""
        held = self._held_providers()
        cap = self._settings.imap.max_connections_per_tenant
        demands = self._tenant_demands(views, held)

        def plan(elsewhere: Mapping[str, int]) -> dict[ProviderRef, int]:
            caps = {
                tenant: plan_tenant_share(
                    cap, workers, self._worker_id, held_elsewhere=elsewhere.get(tenant, 0)
                )
                for tenant, workers in demands.items()
            }
            self._plans = plan_connections(
                held,
                per_account_default=self._settings.imap.max_connections_per_account,
                per_tenant_cap=cap,
                tenant_caps=caps,
            )
            wanted = connections_to_record(held, self._plans)
            records = {}
            for provider in held:
                ref = (provider.tenant, provider.id)
                value = max(wanted.get(provider.id, 0), self._recorded.get(ref, 0))
                if self._recorded.get(ref) != value:
                    records[ref] = value
            return records

        self._recorded.update(self._records.exchange(self._worker_id, demands, plan))
        self._recorded = {ref: n for ref, n in self._recorded.items() if ref in self._held}

    def _tenant_demands(
        self, views: list[LeaseView], held: list[ProviderConfig]
    ) -> dict[str, dict[str, int]]:
        """Per tenant this worker holds providers of: each live worker's demand for it."""
        per_account = self._settings.imap.max_connections_per_account
        demands: dict[str, dict[str, int]] = {p.tenant: {} for p in held}
        mine = {(p.tenant, p.id) for p in held}
        active = {(p.tenant, p.id): p for p in self._providers}
        owners = [(p, self._worker_id) for p in held] + [
            (active[(v.tenant, v.provider_id)], v.owner)
            for v in views
            if v.owner is not None
            and not v.free
            and v.tenant in demands
            and (v.tenant, v.provider_id) in active
            and (v.tenant, v.provider_id) not in mine
        ]
        for provider, owner in owners:
            workers = demands[provider.tenant]
            workers[owner] = workers.get(owner, 0) + demand_of(provider, per_account)
        return demands

    def _held_providers(self) -> list[ProviderConfig]:
        return [p for p in self._providers if (p.tenant, p.id) in self._held]

    def _monitorable(self, providers: list[ProviderConfig]) -> list[ProviderConfig]:
        """The providers whose events the consumer can accept: a tenant id that is not a
        UUID would have every event dropped (``email-service check`` lists them)."""
        kept = []
        for provider in providers:
            problem = tenant_id_problem(provider.tenant)
            if problem is None:
                kept.append(provider)
            elif provider.id not in self._refused:
                self._refused.add(provider.id)
                logger.warning("provider %s is not monitored: %s", provider.id, problem)
        return kept

    def _drop_held(self, refs: list[ProviderRef]) -> None:
        for ref in refs:
            self._held.pop(ref, None)
        dropped = set(refs)
        self._stop_listeners([lid for lid in self._listeners if (lid[0], lid[1]) in dropped])

    # -- connections ----------------------------------------------------------------------

    def _reconcile(self) -> None:
        held_providers = self._held_providers()
        plans = {p.id: self._plans[p.id] for p in held_providers if p.id in self._plans}
        self._resize_slots(held_providers, plans)
        wanted = plan_specs(held_providers, self._held, plans)
        running = {
            lid: version for lid, (version, loop) in self._listeners.items() if not loop.stopped
        }
        for lid in [lid for lid in self._listeners if lid not in running]:
            self._listeners.pop(lid)  # ended on its own (lease lost): start again if wanted
        changes = plan_listeners(running, wanted)
        self._stop_listeners(changes.stop)
        for index, spec in enumerate(changes.start):
            delay = stagger_delay_s(
                index,
                len(changes.start),
                self._settings.reconnect.startup_stagger_s,
                self._rng.random(),
            )
            loop = self._make_loop(spec, delay)
            self._listeners[spec.listener_id] = (spec.version, loop)
            loop.start()
        if changes.start or changes.stop:
            logger.info(
                "connections: %d started, %d stopped, %d running",
                len(changes.start),
                len(changes.stop),
                len(self._listeners),
            )
        self._lower_records(held_providers, plans)

    def _resize_slots(
        self, providers: list[ProviderConfig], plans: Mapping[str, ConnectionPlan]
    ) -> None:
        sizes = {p.tenant: plans[p.id].shared_slots for p in providers if plans[p.id].visiting}
        for tenant, size in sizes.items():
            slots = self._slots.get(tenant)
            if slots is None:
                self._slots[tenant] = ConnectionSlots(size)
            elif slots.size != size:
                slots.resize(size)
        for tenant in [t for t in self._slots if t not in sizes]:
            self._slots[tenant].resize(0)
            if not self._slots[tenant].taken:
                del self._slots[tenant]

    def _lower_records(
        self, providers: list[ProviderConfig], plans: Mapping[str, ConnectionPlan]
    ) -> None:
        """Write records that went down, once the connections above them have stopped (a
        visiting round still on a shared connection counts until it gives it back)."""
        wanted = connections_to_record(providers, plans)
        busy = {t for t, slots in self._slots.items() if slots.taken > slots.size}
        lower = {}
        for provider in providers:
            ref, value = (provider.tenant, provider.id), wanted.get(provider.id, 0)
            if provider.tenant not in busy and self._recorded.get(ref, 0) > value:
                lower[ref] = value
        if lower:
            self._records.record(self._worker_id, lower)
            self._recorded.update(lower)

    def _make_loop(self, spec: ListenerSpec, delay_s: float) -> ConnectionLoop:
        context = self._parts.listener_context
        if spec.polling:
            slots = self._slots.get(spec.provider.tenant) if spec.visiting else None
            return FolderPoller(
                spec.provider, spec.folders, spec.fence, context, start_delay_s=delay_s, slots=slots
            )
        return FolderListener(
            spec.provider, spec.folders[0], spec.fence, context, start_delay_s=delay_s
        )

    def _stop_listeners(self, listener_ids: list[ListenerId]) -> None:
        loops = [self._listeners.pop(lid)[1] for lid in listener_ids if lid in self._listeners]
        for loop in loops:
            loop.stop()
        for loop in loops:
            if not loop.join(SHUTDOWN_TIMEOUT_S):
                logger.warning("connection %s did not stop in time", loop.provider.id)

    def _jitter(self) -> float:
        return 1 + self._settings.reconnect.timer_jitter_pct * (2 * self._rng.random() - 1)

    def _update_gauges(self) -> None:
        """Listener states and leases, when /metrics is read (on the HTTP thread: the
        supervisor may change ``_listeners`` meanwhile, so it is copied in one step)."""
        metrics = self._parts.listener_context.metrics
        counts: dict[FolderState, int] = {}
        for _version, loop in list(self._listeners.values()):
            counts[loop.state] = counts.get(loop.state, 0) + 1
        for state in LISTENER_STATES:
            metrics.set("email_service_listeners", counts.get(state, 0), state=state.value)
        metrics.set("email_service_leases_held", len(self._held))


def run_worker(settings: Settings, *, http_port: int) -> None:
    """Run until SIGTERM or SIGINT."""
    parts = WorkerParts.build(settings)
    supervisor = Supervisor(parts)
    thread = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
    logger.info("worker %s starting (pid %d)", settings.process.worker_id, os.getpid())
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
            limits=HttpLimits.of(settings.process),
        )
        try:
            await stop.wait()
        finally:
            logger.info("worker stopping")
            supervisor.stop_event.set()
            await asyncio.to_thread(thread.join, SHUTDOWN_TIMEOUT_S + 5)
            await runner.cleanup()
            parts.listener_context.builder.close()
            parts.engine.dispose()

    asyncio.run(serve())
    logger.info("worker stopped")
