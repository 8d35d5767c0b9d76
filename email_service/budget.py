"""Which folders hold a connection in IDLE, which are polled, and when (core).

Mail servers limit the connections of one account (Gmail 15, many others fewer), and one
tenant with many mailboxes must not take every connection of a worker. ``plan_connections``
splits every provider's folders into IDLE folders (one connection each) and polled folders
(all of them on ONE connection, checked with STATUS in turn by ``poller.FolderPoller``).

The rules, in order:

1. A provider's budget is its own ``max_connections``, else ``per_account_default`` capped by
   its preset's limit (Gmail 15, Microsoft 20: ``providers.presets``).
   Folders are ranked in configured order with INBOX first (it gets most mail, so it keeps
   IDLE longest); a folder listed twice counts once.
2. If the folders fit the budget, every folder is in IDLE. Otherwise the first
   ``budget - 1`` stay in IDLE and the rest share one polling connection; a budget of 1
   with several folders means one poller and nothing in IDLE.
3. The tenant cap: while the connections of a tenant's providers add up to more than
   ``per_tenant_cap``, the provider holding the most connections gives one up (ties go to
   the lowest provider id, so equal providers take turns): its last IDLE folder moves to
   the poller. This is max-min fair: a big mailbox shrinks before a small one.
4. A provider never drops below one connection, because every folder must be followed
   (nothing lost beats the cap). So when a tenant has more providers than its cap, each
   gets one connection (a poller, or IDLE when it has a single folder) and the tenant
   holds ``providers - cap`` connections more than the cap.

Expressed as a count ``n`` of connections for a provider with ``F`` folders: ``n == F``
means all in IDLE; ``n < F`` means ``n - 1`` in IDLE plus a poller. Taking one away always
saves exactly one connection, which is why rule 3 works on counts.

For the poller: ``plan_poll_step`` says which folder to check next and how long to wait,
``should_catch_up`` whether a folder's STATUS means new mail.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from email_service.model import FolderCursor, ProviderConfig
from providers.presets import connection_limit

#: The folder ranked first for IDLE: RFC 3501 names it and treats it case-insensitively.
INBOX = "INBOX"


@dataclass(frozen=True)
class ConnectionPlan:
    """How one provider's folders are followed."""

    idle_folders: tuple[str, ...]
    polled_folders: tuple[str, ...]

    @property
    def connections(self) -> int:
        """IMAP connections this plan holds: one per IDLE folder, one for all polled ones."""
        return len(self.idle_folders) + (1 if self.polled_folders else 0)


@dataclass(frozen=True)
class PollStep:
    """The poller's next move: check ``folder_index``, then wait ``wait_s``."""

    folder_index: int
    wait_s: float


def rank_folders(folders: Sequence[str]) -> tuple[str, ...]:
    """``folders`` without repeats, in configured order, INBOX first when present."""
    unique = tuple(dict.fromkeys(folders))
    inbox = tuple(folder for folder in unique if folder.upper() == INBOX)
    return inbox + tuple(folder for folder in unique if folder.upper() != INBOX)


def split_folders(folders: Sequence[str], connections: int) -> ConnectionPlan:
    """The plan for ``folders`` (ranked) on at most ``connections`` connections (min. 1)."""
    ranked = rank_folders(folders)
    if len(ranked) <= max(connections, 1):
        return ConnectionPlan(idle_folders=ranked, polled_folders=())
    idle = max(connections, 1) - 1
    return ConnectionPlan(idle_folders=ranked[:idle], polled_folders=ranked[idle:])


def plan_connections(
    providers: Sequence[ProviderConfig], *, per_account_default: int, per_tenant_cap: int
) -> dict[str, ConnectionPlan]:
    """Each provider's plan, keyed by provider id, within account budgets and tenant caps."""
    counts: dict[str, int] = {}
    folders: dict[str, tuple[str, ...]] = {}
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for provider in sorted(providers, key=lambda p: (p.tenant, p.id)):
        ranked = rank_folders(provider.folders)
        default = connection_limit(provider.provider_type, per_account_default)
        budget = max(provider.max_connections or default, 1)
        folders[provider.id] = ranked
        counts[provider.id] = min(len(ranked), budget)
        by_tenant[provider.tenant].append(provider.id)
    for provider_ids in by_tenant.values():
        _fit_tenant_cap(provider_ids, counts, per_tenant_cap)
    return {pid: split_folders(folders[pid], counts[pid]) for pid in sorted(folders)}


def _fit_tenant_cap(provider_ids: list[str], counts: dict[str, int], cap: int) -> None:
    """Lower ``counts`` of these providers (sorted ids) until they fit ``cap`` or are all 1."""
    excess = sum(counts[pid] for pid in provider_ids) - cap
    while excess > 0:
        largest = max(counts[pid] for pid in provider_ids)
        if largest <= 1:
            return  # every provider is down to one connection: rule 4
        donor = next(pid for pid in provider_ids if counts[pid] == largest)
        counts[donor] -= 1
        excess -= 1


def plan_poll_step(
    previous_index: int | None,
    *,
    folder_count: int,
    interval_s: float,
    jitter_pct: float,
    random_unit: float,
) -> PollStep:
    """The next folder to check and how long to wait after it (``random_unit`` in [0, 1)).

    Folders are visited in turn, and the interval is spread evenly over them, so each folder
    is checked about once per ``interval_s`` and the server sees one STATUS every
    ``interval_s / folder_count`` rather than a burst. Each wait is spread by
    ``±jitter_pct`` so pollers started together drift apart.
    """
    if folder_count < 1:
        raise ValueError("a poller needs at least one folder")
    index = 0 if previous_index is None else (previous_index + 1) % folder_count
    spread = 1.0 + jitter_pct * (2.0 * random_unit - 1.0)
    return PollStep(folder_index=index, wait_s=max(interval_s / folder_count * spread, 0.0))


def should_catch_up(
    cursor: FolderCursor, *, seen_uid_next: int | None, uid_validity: int, uid_next: int | None
) -> bool:
    """Whether a polled folder may hold mail above ``cursor``, judging by its STATUS.

    ``seen_uid_next`` is the UIDNEXT the folder had when it was last EXAMINEd before a catch
    up: every UID below it was either published then or expunged, so a UIDNEXT that has not
    moved past it means nothing new, even when the newest messages were expunged and the
    cursor stayed lower. A new UIDVALIDITY, or a server that gives no UIDNEXT, always
    means looking.
    """
    if uid_validity != cursor.uid_validity or uid_next is None:
        return True
    return uid_next > max(cursor.last_uid + 1, seen_uid_next or 0)
