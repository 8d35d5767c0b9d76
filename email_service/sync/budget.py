"""Which folders hold a connection in IDLE, which are polled, and when (core).

Mail servers limit the connections of one account (Gmail 15, many others fewer), and one
tenant with many mailboxes must not take every connection of a worker. ``plan_connections``
splits every provider's folders into IDLE folders (one connection each) and polled folders
(all of them on ONE connection, checked with STATUS in turn by ``sync.poller.FolderPoller``).

The rules, in order:

1. A provider's budget is its own ``max_connections``, else ``per_account_default`` capped by
   its preset's limit (Gmail 15, Microsoft 20: ``providers.presets``).
   Folders are ranked in configured order with INBOX first (it gets most mail, so it keeps
   IDLE longest); a folder listed twice counts once.
2. If the folders fit the budget, every folder is in IDLE. Otherwise the first
   ``budget - 1`` stay in IDLE and the rest share one polling connection; a budget of 1
   with several folders means one poller and nothing in IDLE.
3. The tenant cap: while the connections of a tenant's providers add up to more than
   its cap, the provider holding the most connections gives one up (ties go to the lowest
   provider id, so equal providers take turns): its last IDLE folder moves to the poller.
   This is max-min fair: a big mailbox shrinks before a small one.
4. When even one connection each is too many (more providers than the cap), providers
   take turns: ``cap - S`` of them (the lowest ids) keep one connection each, and the
   rest *visit*: each round one of them takes one of ``S`` shared connections
   (``SHARED_SLOT_FRACTION`` of the cap, at least one), logs in, checks every folder
   with STATUS, catches up, logs out and gives the connection back. Every folder is still
   followed (nothing is lost), only later: about ``IMAP_POLL_INTERVAL_MS`` plus the time
   the others' rounds take. The tenant never holds more than its cap.

The cap is the tenant's across all workers (``IMAP_MAX_CONNECTIONS_PER_TENANT``). Each
worker plans with its own part of it, ``plan_tenant_share``: the cap split max-min fairly
over the workers' demands (what their providers of the tenant would hold without a
tenant cap), no more than the cap less what the other workers recorded on their lease
rows, and at least one connection for a worker that holds any of the tenant's providers.

Expressed as a count ``n`` of connections for a provider with ``F`` folders: ``n == F``
means all in IDLE; ``n < F`` means ``n - 1`` in IDLE plus a poller. Taking one away always
saves exactly one connection, which is why rule 3 works on counts.

For the poller: ``plan_poll_step`` says which folder to check next and how long to wait,
``should_catch_up`` whether a folder's STATUS means new mail.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from email_service.model import FolderCursor, ProviderConfig
from providers.presets import connection_limit

#: The folder ranked first for IDLE: RFC 3501 names it and treats it case-insensitively.
INBOX = "INBOX"


#: Part of a tenant's cap kept as shared connections when its providers take turns (rule
#: 4): more makes each visiting provider's turn come sooner, less keeps more providers on
#: a connection of their own (which sees new mail at once).
SHARED_SLOT_FRACTION = 0.1


@dataclass(frozen=True)
class ConnectionPlan:
    """How one provider's folders are followed."""

    idle_folders: tuple[str, ...]
    polled_folders: tuple[str, ...]
    #: The provider has no connection of its own: its (polled) folders are visited in
    #: rounds on one of the ``shared_slots`` connections its tenant's visiting providers
    #: share (0 for a moment, while other workers still hold the whole cap).
    visiting: bool = False
    shared_slots: int = 0

    @property
    def connections(self) -> int:
        """IMAP connections this plan holds of its own: one per IDLE folder, one for all
        polled ones; none when visiting (the shared ones are the tenant's)."""
        if self.visiting:
            return 0
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


def account_budget(provider: ProviderConfig, per_account_default: int) -> int:
    """Connections ``provider``'s account may hold at once (rule 1): its own
    ``max_connections``, else the preset's limit within ``IMAP_MAX_CONNECTIONS_PER_ACCOUNT``."""
    default = connection_limit(provider.provider_type, per_account_default)
    return max(provider.max_connections or default, 1)


def demand_of(provider: ProviderConfig, per_account_default: int) -> int:
    """Connections ``provider`` would hold without a tenant cap (rules 1 and 2)."""
    return min(len(rank_folders(provider.folders)), account_budget(provider, per_account_default))


def plan_connections(
    providers: Sequence[ProviderConfig],
    *,
    per_account_default: int,
    per_tenant_cap: int,
    tenant_caps: Mapping[str, int] | None = None,
) -> dict[str, ConnectionPlan]:
    """Each provider's plan, keyed by provider id, within account budgets and tenant caps
    (``tenant_caps`` gives a tenant's own, say this worker's share; else ``per_tenant_cap``).
    """
    counts: dict[str, int] = {}
    folders: dict[str, tuple[str, ...]] = {}
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for provider in sorted(providers, key=lambda p: (p.tenant, p.id)):
        folders[provider.id] = rank_folders(provider.folders)
        counts[provider.id] = demand_of(provider, per_account_default)
        by_tenant[provider.tenant].append(provider.id)
    slots: dict[str, int] = {}
    for tenant, provider_ids in by_tenant.items():
        cap = max((tenant_caps or {}).get(tenant, per_tenant_cap), 0)
        slots.update(_fit_tenant_cap([p for p in provider_ids if counts[p]], counts, cap))
    plans = {}
    for pid in sorted(folders):
        if pid in slots:
            plans[pid] = ConnectionPlan((), folders[pid], visiting=True, shared_slots=slots[pid])
        else:
            plans[pid] = split_folders(folders[pid], counts[pid])
    return plans


def _fit_tenant_cap(provider_ids: list[str], counts: dict[str, int], cap: int) -> dict[str, int]:
    """Lower ``counts`` of these providers (sorted ids) until they fit ``cap`` (rule 3);
    when one each is still too many, the visiting providers with the shared slots (rule 4).
    """
    excess = sum(counts[pid] for pid in provider_ids) - cap
    while excess > 0:
        largest = max(counts[pid] for pid in provider_ids)
        if largest <= 1:
            break
        donor = next(pid for pid in provider_ids if counts[pid] == largest)
        counts[donor] -= 1
        excess -= 1
    if excess <= 0:
        return {}
    shared = min(max(math.ceil(cap * SHARED_SLOT_FRACTION), 1), cap)
    keep = cap - shared
    return {pid: shared for pid in provider_ids[keep:]}


def connections_to_record(
    providers: Sequence[ProviderConfig], plans: Mapping[str, ConnectionPlan]
) -> dict[str, int]:
    """What each provider's lease row records: its own connections, and the tenant's shared
    connections spread one each over its first visiting providers (by id), so a tenant's
    rows add up to what its plans may hold at once."""
    records: dict[str, int] = {}
    given: dict[str, int] = defaultdict(int)
    for provider in sorted(providers, key=lambda p: (p.tenant, p.id)):
        plan = plans.get(provider.id)
        if plan is None:
            continue
        if plan.visiting:
            share = 1 if given[provider.tenant] < plan.shared_slots else 0
            given[provider.tenant] += share
            records[provider.id] = share
        else:
            records[provider.id] = plan.connections
    return records


def plan_tenant_share(cap: int, demands: Mapping[str, int], me: str, *, held_elsewhere: int) -> int:
    """This worker's part (``me``) of a tenant's cap of ``cap`` connections.

    ``demands`` are the workers' demands for the tenant (``demand_of`` summed over the
    providers each holds). The cap is split max-min fairly: workers asking less than an
    even split get what they ask, the rest share what is left evenly (the remainder to the
    lowest worker ids). No more than ``cap - held_elsewhere`` (what the other workers
    recorded), so while they shrink to their own parts this one does not grow into them: it
    may be 0 for a refresh, its visiting providers then wait. Only when more workers hold
    the tenant's providers than the cap has connections does each get 1 regardless (the
    cap cannot hold then; following every folder comes first).
    """
    mine = demands.get(me, 0)
    if mine <= 0:
        return 0
    left, waiting = cap, sorted(demands, key=lambda w: (demands[w], w))
    share: dict[str, int] = {}
    while waiting:
        even = left // len(waiting)
        small = [w for w in waiting if demands[w] <= even]
        if not small:
            extra = left - even * len(waiting)
            for index, worker in enumerate(sorted(waiting)):
                share[worker] = even + (1 if index < extra else 0)
            break
        for worker in small:
            share[worker] = demands[worker]
            left -= demands[worker]
        waiting = [w for w in waiting if w not in small]
    if len([w for w in demands if demands[w] > 0]) > cap:
        return max(share.get(me, 0), 1)
    return max(min(share.get(me, 0), cap - held_elsewhere), 0)


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
