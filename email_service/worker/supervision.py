"""Which listeners and pollers a worker should run for the leases it holds (core).

For every provider this worker holds the lease of, the connection plan (``sync/budget.py``) says
which folders get an IDLE listener of their own and which share one STATUS poller. Each
connection is identified by ``(tenant, provider id, name)`` (the folder, or ``POLLER``) and
carries a version: the provider's ``updated_at``, the lease's fence and the folders it
follows. A changed version restarts the connection with the new configuration.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from email_service.model import ProviderConfig
from email_service.sync.budget import ConnectionPlan

ListenerId = tuple[str, str, str]  # tenant, provider id, folder or POLLER
ProviderRef = tuple[str, str]  # tenant, provider id

#: Name of the one polling connection of a provider in its ListenerId.
POLLER = "*poller*"


@dataclass(frozen=True)
class ListenerSpec:
    """One connection to run: an IDLE listener (``folders`` has one) or a poller (visiting:
    on its tenant's shared connections, one round at a time)."""

    provider: ProviderConfig
    fence: int
    folders: tuple[str, ...]
    polling: bool
    visiting: bool = False

    @property
    def listener_id(self) -> ListenerId:
        name = POLLER if self.polling else self.folders[0]
        return (self.provider.tenant, self.provider.id, name)

    @property
    def version(self) -> Hashable:
        return (self.provider.updated_at, self.fence, self.folders, self.visiting)


@dataclass(frozen=True)
class ListenerChanges:
    start: list[ListenerSpec]
    stop: list[ListenerId]


def plan_specs(
    providers: Iterable[ProviderConfig],
    held: Mapping[ProviderRef, int],
    plans: Mapping[str, ConnectionPlan],
) -> dict[ListenerId, ListenerSpec]:
    """The connections wanted for the held providers."""
    wanted: dict[ListenerId, ListenerSpec] = {}
    for provider in providers:
        fence = held.get((provider.tenant, provider.id))
        plan = plans.get(provider.id)
        if fence is None or plan is None or not provider.is_active or provider.is_paused:
            continue
        specs = [ListenerSpec(provider, fence, (folder,), False) for folder in plan.idle_folders]
        if plan.polled_folders:
            specs.append(
                ListenerSpec(provider, fence, plan.polled_folders, True, visiting=plan.visiting)
            )
        for spec in specs:
            wanted[spec.listener_id] = spec
    return wanted


def plan_listeners(
    running: Mapping[ListenerId, Hashable], wanted: Mapping[ListenerId, ListenerSpec]
) -> ListenerChanges:
    """Connections to stop (gone or changed) and to start (new or changed)."""
    stop = [
        listener_id
        for listener_id, version in running.items()
        if listener_id not in wanted or wanted[listener_id].version != version
    ]
    start = [
        spec
        for listener_id, spec in wanted.items()
        if listener_id not in running or listener_id in stop
    ]
    return ListenerChanges(start=start, stop=stop)


def stagger_delay_s(index: int, count: int, window_s: float, random_unit: float) -> float:
    """Start delay of the ``index``-th of ``count`` new connections, spread over the window."""
    if count <= 1 or window_s <= 0:
        return 0.0
    slot_s = window_s / count
    return (index + random_unit) * slot_s
