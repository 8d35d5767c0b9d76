"""Which folder listeners a worker should start and stop (core).

A listener is identified by provider and folder and remembers the provider version
(``updated_at``) it was started with; a changed version restarts it with the new config.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from email_service.model import ProviderConfig

ListenerId = tuple[str, str, str]  # tenant, provider id, folder


@dataclass(frozen=True)
class ListenerChanges:
    start: list[tuple[ProviderConfig, str]]
    stop: list[ListenerId]


def plan_listeners(
    running: Mapping[ListenerId, datetime], providers: Iterable[ProviderConfig]
) -> ListenerChanges:
    """Listeners to stop (gone, inactive, or changed) and to start (new, or changed)."""
    wanted: dict[ListenerId, ProviderConfig] = {}
    for provider in providers:
        if not provider.is_active:
            continue
        for folder in provider.folders:
            wanted[(provider.tenant, provider.id, folder)] = provider
    stop = [
        listener_id
        for listener_id, version in running.items()
        if listener_id not in wanted or wanted[listener_id].updated_at != version
    ]
    start = [
        (provider, listener_id[2])
        for listener_id, provider in wanted.items()
        if listener_id not in running or listener_id in stop
    ]
    return ListenerChanges(start=start, stop=stop)


def stagger_delay_s(index: int, count: int, window_ms: int, random_unit: float) -> float:
    """Start delay of the ``index``-th of ``count`` new listeners, spread over the window."""
    if count <= 1 or window_ms <= 0:
        return 0.0
    slot_s = window_ms / 1000 / count
    return (index + random_unit) * slot_s
