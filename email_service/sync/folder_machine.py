"""The state machine of a followed folder (core: events in, next state and actions out).

One connection follows one folder (``FolderListener``: IDLE, or a poll timer when the server
has no IDLE) or several (``FolderPoller``: STATUS in turn; *visiting* when its tenant is
over its connection cap, one round per shared connection). The shells
(``sync.connection_loop`` and those two) run the actions a transition returns, one after
the other, and feed back what came of them as the next event; every decision is here.
The diagram is in docs/architecture.md ("The state machine of a folder"); the actions are
in ``sync.folder_actions``, and errors become ``Failed`` events through
``sync.failures.classify_failure``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from email_service.sync.backoff import BackoffPolicy, failures_after_disconnect, next_delay_s
from email_service.sync.budget import plan_poll_step
from email_service.sync.failures import Failure, FailureKind
from email_service.sync.folder_actions import (
    Action,
    CheckPolled,
    Connect,
    CountRenewal,
    Disconnect,
    Log,
    MarkConnected,
    OpenFolder,
    RecordFailure,
    Sleep,
    SyncFolder,
    SyncPolled,
    TakeSlot,
    WaitForChanges,
    WaitForTimer,
)

#: Shortest IDLE or poll wait while a renewal is near, so the loop does not spin.
MIN_WAIT_S = 0.05
#: Why the periodic reconciliation verifies the folder (in the log when it changed).
RECONCILIATION = "the periodic reconciliation"


class FolderState(StrEnum):
    """Where a connection is; the values are the ``state`` label of
    ``email_service_listeners`` (docs/operations.md), so they never change."""

    STARTING = "starting"  #: waiting out the start-up stagger
    WAITING = "waiting"  #: for a shared connection of its tenant (visiting)
    CONNECTING = "connecting"  #: connecting and logging in
    SYNCING = "syncing"  #: opening, verifying or catching up a folder
    IDLE = "idle"  #: in IDLE, waiting for the server
    POLLING = "polling"  #: waiting for the poll timer, or checking a folder's STATUS
    BACKOFF = "backoff"  #: after a failure that may pass, before connecting again
    PARKED = "parked"  #: after a failure that needs a change, for the longest backoff
    STOPPED = "stopped"  #: stopped, or the lease is lost: the thread ends


class Follows(StrEnum):
    """What one connection follows."""

    FOLDER = "folder"  #: one folder, in IDLE (or on a poll timer without IDLE)
    FOLDERS = "folders"  #: several folders in turn, by STATUS, on a connection kept open
    VISITS = "visits"  #: several folders once per shared connection, then logs out


@dataclass(frozen=True)
class FolderRules:
    """The settings a machine decides by (fixed for a connection's life)."""

    follows: Follows
    backoff: BackoffPolicy
    start_delay_s: float
    poll_interval_s: float
    idle_reissue_s: float
    timer_jitter_pct: float
    folder_count: int = 1


@dataclass(frozen=True)
class Folder:
    """The machine: a state and what it remembers."""

    rules: FolderRules
    state: FolderState = FolderState.STARTING
    #: Failures in a row (``backoff.failures_after_disconnect``).
    failures: int = 0
    #: A shared connection slot is taken (visiting).
    holding_slot: bool = False
    #: The session has IDLE (else the folder is polled on a timer).
    idle: bool = False
    #: The poller's next folder (an index into its folders).
    poll_index: int = 0


# -- events: what happened --------------------------------------------------------------


@dataclass(frozen=True)
class Stop:
    """A stop was requested (the supervisor, shutdown)."""


@dataclass(frozen=True)
class Slept:
    """A ``Sleep`` ended without a stop."""


@dataclass(frozen=True)
class SlotTaken:
    """A shared connection slot is ours."""


@dataclass(frozen=True)
class Connected:
    """The session is logged in."""

    idle_capable: bool


@dataclass(frozen=True)
class CaughtUp:
    """The folder is published up to its last UID; what the server said meanwhile."""

    new_mail: bool
    verify: str | None
    #: Seconds until the session must log in again (None: never, a password login).
    renew_in_s: float | None


@dataclass(frozen=True)
class ChangesSeen:
    """IDLE ended because the server announced something."""

    new_mail: bool
    verify: str | None


@dataclass(frozen=True)
class WaitEnded:
    """An IDLE or poll wait ran out with nothing seen."""

    renew_in_s: float | None


@dataclass(frozen=True)
class PolledChecked:
    """The poller looked at folder ``index`` (STATUS or EXAMINE)."""

    index: int
    changed: bool
    renew_in_s: float | None
    random_unit: float


@dataclass(frozen=True)
class PolledSynced:
    """The poller caught folder ``index`` up."""

    index: int
    renew_in_s: float | None
    random_unit: float


@dataclass(frozen=True)
class Failed:
    """An action failed (``classify_failure``)."""

    failure: Failure
    #: How long the session had been up; None if it never came up.
    connected_for_s: float | None = None
    random_unit: float = 0.5


#: Everything a shell feeds back.
Event = (
    Stop
    | Slept
    | SlotTaken
    | Connected
    | CaughtUp
    | ChangesSeen
    | WaitEnded
    | PolledChecked
    | PolledSynced
    | Failed
)


@dataclass(frozen=True)
class Transition:
    folder: Folder
    actions: tuple[Action, ...] = ()


# -- the transition function -------------------------------------------------------------


def start(rules: FolderRules) -> Transition:
    """The first transition: wait out the start-up stagger."""
    return Transition(Folder(rules), (Sleep(rules.start_delay_s),))


def decide_next(folder: Folder, event: Event) -> Transition:
    """The state after ``event`` and the actions to run, in order."""
    state = folder.state
    match event:
        case _ if state is FolderState.STOPPED:
            return Transition(folder)
        case Stop():
            return _stopped(folder)
        case Failed(failure, connected_for_s, random_unit):
            return _failed(folder, failure, connected_for_s, random_unit)
        case Slept() if _disconnected(folder):
            return _connect(folder)
        case SlotTaken() if state is FolderState.WAITING:
            return _to(folder, FolderState.CONNECTING, Connect(), holding_slot=True)
        case Connected(idle_capable) if state is FolderState.CONNECTING:
            return _connected(folder, idle_capable)
    transition = _follow(folder, event)
    if transition is None:
        raise ValueError(f"no transition from {state} on {event}")
    return transition


def _follow(folder: Folder, event: Event) -> Transition | None:
    """While connected: from catching up to waiting and back."""
    state = folder.state
    match event:
        case CaughtUp(new_mail, verify, renew_in_s) if state is FolderState.SYNCING:
            if new_mail or verify is not None:  # seen during the catch-up: not repeated
                return _to(folder, FolderState.SYNCING, SyncFolder(verify))
            return _renew_or(folder, renew_in_s, _wait(folder, renew_in_s))
        case ChangesSeen(_new_mail, verify) if state is FolderState.IDLE:
            return _to(folder, FolderState.SYNCING, SyncFolder(verify))
        case WaitEnded(renew_in_s) if state in (FolderState.IDLE, FolderState.POLLING):
            if folder.rules.follows is Follows.FOLDERS:
                then = _to(folder, FolderState.POLLING, CheckPolled(folder.poll_index))
            else:  # also the liveness check before waiting again
                then = _to(folder, FolderState.SYNCING, SyncFolder(RECONCILIATION))
            return _renew_or(folder, renew_in_s, then)
        case PolledChecked(index, True, _renew, _random) if state is FolderState.POLLING:
            return _to(folder, FolderState.SYNCING, SyncPolled(index))
        case PolledChecked(index, False, renew_in_s, random_unit) if state is FolderState.POLLING:
            return _visited(folder, index, renew_in_s, random_unit)
        case PolledSynced(index, renew_in_s, random_unit) if state is FolderState.SYNCING:
            return _visited(folder, index, renew_in_s, random_unit)
    return None


def _disconnected(folder: Folder) -> bool:
    """Sleeping without a connection: the stagger, a backoff, parked, between visits."""
    if folder.state is FolderState.POLLING:
        return folder.rules.follows is Follows.VISITS
    return folder.state in (FolderState.STARTING, FolderState.BACKOFF, FolderState.PARKED)


def _to(folder: Folder, state: FolderState, *actions: Action, **changes: Any) -> Transition:
    return Transition(replace(folder, state=state, **changes), actions)


def _connect(folder: Folder, *before: Action) -> Transition:
    """Connect again: after a shared slot when visiting."""
    if folder.rules.follows is Follows.VISITS:
        return _to(folder, FolderState.WAITING, *before, TakeSlot())
    return _to(folder, FolderState.CONNECTING, *before, Connect())


def _stopped(folder: Folder, *before: Action) -> Transition:
    disconnect = Disconnect(give_back_slot=folder.holding_slot)
    return _to(folder, FolderState.STOPPED, *before, disconnect, holding_slot=False)


def _connected(folder: Folder, idle_capable: bool) -> Transition:
    if folder.rules.follows is Follows.FOLDER:
        return _to(
            folder,
            FolderState.SYNCING,
            OpenFolder(),
            MarkConnected(),
            SyncFolder(),
            idle=idle_capable,
        )
    return _to(
        folder, FolderState.POLLING, MarkConnected(), CheckPolled(0), idle=False, poll_index=0
    )


def _wait_cap_s(wait_s: float, renew_in_s: float | None) -> float:
    """``wait_s``, shortened so the wait ends when the session is due for renewal."""
    return wait_s if renew_in_s is None else max(min(wait_s, renew_in_s), MIN_WAIT_S)


def _wait(folder: Folder, renew_in_s: float | None) -> Transition:
    """A listener caught up: IDLE, or the poll timer."""
    rules = folder.rules
    if folder.idle:
        return _to(
            folder, FolderState.IDLE, WaitForChanges(_wait_cap_s(rules.idle_reissue_s, renew_in_s))
        )
    timeout_s = _wait_cap_s(rules.poll_interval_s, renew_in_s)
    return _to(folder, FolderState.POLLING, WaitForTimer(timeout_s))


def _renew_or(folder: Folder, renew_in_s: float | None, then: Transition) -> Transition:
    """Log in again now if the token is due (not a failure), else ``then``."""
    if renew_in_s is None or renew_in_s > 0:
        return then
    disconnect = Disconnect(give_back_slot=folder.holding_slot)
    return _connect(replace(folder, holding_slot=False), CountRenewal(), disconnect)


def _visited(
    folder: Folder, index: int, renew_in_s: float | None, random_unit: float
) -> Transition:
    rules = folder.rules
    if rules.follows is Follows.VISITS:
        if index + 1 < rules.folder_count:
            return _to(folder, FolderState.POLLING, CheckPolled(index + 1))
        spread = 1 + rules.timer_jitter_pct * (2 * random_unit - 1)
        disconnect = Disconnect(give_back_slot=folder.holding_slot)
        round_wait = Sleep(rules.poll_interval_s * spread)
        return _to(
            folder, FolderState.POLLING, disconnect, round_wait, failures=0, holding_slot=False
        )
    step = plan_poll_step(
        index,
        folder_count=rules.folder_count,
        interval_s=rules.poll_interval_s,
        jitter_pct=rules.timer_jitter_pct,
        random_unit=random_unit,
    )
    wait = WaitForTimer(_wait_cap_s(step.wait_s, renew_in_s))
    return _renew_or(
        folder,
        renew_in_s,
        _to(folder, FolderState.POLLING, wait, poll_index=step.folder_index),
    )


def _failed(
    folder: Folder, failure: Failure, connected_for_s: float | None, random_unit: float
) -> Transition:
    policy = folder.rules.backoff
    disconnect = Disconnect(give_back_slot=folder.holding_slot)
    match failure.kind:
        case FailureKind.STOPPING:
            note = Log(logging.INFO, f"connection closed to stop ({failure.message})")
            return _stopped(folder, note)
        case FailureKind.LEASE_LOST:
            return _stopped(folder, Log(logging.WARNING, "lease lost; stopping"))
        case FailureKind.STALE_LOGIN:  # not counted: the login is tried once more
            note = Log(logging.INFO, "access token refused; refreshing it and trying once more")
            return _to(folder, FolderState.CONNECTING, note, Connect(refresh_token=True))
        case FailureKind.PERMANENT | FailureKind.FOLDER_MISSING:
            record = RecordFailure(failure)
            park = Sleep(policy.max_s)
            return _to(folder, FolderState.PARKED, record, disconnect, park, holding_slot=False)
    hint_s = policy.max_s / 2 if failure.kind is FailureKind.UNEXPECTED else failure.hint_s
    failures = failures_after_disconnect(policy, folder.failures, connected_for_s)
    delay_s = next_delay_s(policy, failures, random_unit=random_unit, hint_s=hint_s)
    note = Log(logging.INFO, f"reconnecting in {delay_s:.1f}s (failure {failures} in a row)")
    return _to(
        folder,
        FolderState.BACKOFF,
        RecordFailure(failure),
        disconnect,
        note,
        Sleep(delay_s),
        failures=failures,
        holding_slot=False,
    )
