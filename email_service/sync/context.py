"""What every connection of a worker shares: stores, publisher, logins, clock (shell wiring)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from email_service.imap.session import Login
from email_service.ingest.parse_pool import EntryBuilder
from email_service.metrics import Metrics
from email_service.model import ProviderConfig
from email_service.publish.gate import PublishGate
from email_service.publish.publisher import EventPublisher
from email_service.settings import Settings
from email_service.store.cursors import CursorStore
from email_service.store.providers import ProviderStore


class LoadLogin(Protocol):
    """How a connection gets its credentials (``imap.logins.LoginSource.login_for``)."""

    def __call__(self, provider: ProviderConfig, *, rejected: str | None = None) -> Login: ...


@dataclass
class ListenerContext:
    """What every listener of a worker shares."""

    settings: Settings
    cursors: CursorStore
    providers: ProviderStore
    publisher: EventPublisher
    load_login: LoadLogin
    metrics: Metrics
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: Parses fetched batches (a process pool, or inline).
    builder: EntryBuilder = field(default_factory=lambda: EntryBuilder(0))
    rng: random.Random = field(default_factory=random.Random)
    #: Holds batches while Redis is above its water marks (None: never held).
    gate: PublishGate | None = None
