"""The folder's state machine: every transition, and how each error is classified."""

from __future__ import annotations

import logging

import pytest

from email_service.errors import (
    AuthenticationFailed,
    ConnectionLost,
    FolderMissing,
    HostUnresolvable,
    ImapCommandFailed,
    InvalidSettings,
    LeaseLost,
    PublishFailed,
    ReauthorizationRequired,
    SecretUndecryptable,
    ServerThrottled,
    StorageUnavailable,
    TlsVerificationFailed,
    TokenEndpointUnavailable,
)
from email_service.sync.backoff import BackoffPolicy
from email_service.sync.failures import (
    Failure,
    FailureKind,
    classify_failure,
    describe_failure,
)
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
from email_service.sync.folder_machine import (
    RECONCILIATION,
    CaughtUp,
    ChangesSeen,
    Connected,
    Event,
    Failed,
    Folder,
    FolderRules,
    FolderState,
    Follows,
    PolledChecked,
    PolledSynced,
    Slept,
    SlotTaken,
    Stop,
    Transition,
    WaitEnded,
    decide_next,
    start,
)

S = FolderState
POLICY = BackoffPolicy(base_s=1.0, max_s=300.0, jitter_pct=0.5, stable_s=120.0)


def rules(follows: Follows = Follows.FOLDER, folders: int = 1) -> FolderRules:
    return FolderRules(
        follows=follows,
        backoff=POLICY,
        start_delay_s=2.0,
        poll_interval_s=60.0,
        idle_reissue_s=120.0,
        timer_jitter_pct=0.1,
        folder_count=folders,
    )


LISTENER, POLLER, VISITOR = rules(), rules(Follows.FOLDERS, 3), rules(Follows.VISITS, 2)


def at(state: FolderState, on: FolderRules = LISTENER, **fields: object) -> Folder:
    return Folder(on, state, **fields)  # type: ignore[arg-type]


def failed(kind: FailureKind, *, connected_for_s: float | None = None, hint_s: float | None = None):  # type: ignore[no-untyped-def]
    return Failed(Failure(kind, "it broke", hint_s), connected_for_s, random_unit=0.5)


TRANSIENT = Failure(FailureKind.TRANSIENT, "it broke")


def backoff(
    failure: Failure, delay_s: float, failures: int, *, give_back_slot: bool = False
) -> tuple[Action, ...]:
    """What a failure that may pass does: record, disconnect, say when, wait."""
    note = f"reconnecting in {delay_s:.1f}s (failure {failures} in a row)"
    return (
        RecordFailure(failure),
        Disconnect(give_back_slot),
        Log(logging.INFO, note),
        Sleep(delay_s),
    )


RENEW = (CountRenewal(), Disconnect())
STOP = (Disconnect(),)

#: (folder before, event, state after, actions, fields after that differ from before)
TRANSITIONS: list[tuple[Folder, Event, FolderState, tuple[Action, ...], dict[str, object]]] = [
    # waiting to connect
    (at(S.STARTING), Slept(), S.CONNECTING, (Connect(),), {}),
    (at(S.STARTING, VISITOR), Slept(), S.WAITING, (TakeSlot(),), {}),
    (at(S.STARTING), Stop(), S.STOPPED, STOP, {}),
    (at(S.WAITING, VISITOR), SlotTaken(), S.CONNECTING, (Connect(),), {"holding_slot": True}),
    (at(S.WAITING, VISITOR), Stop(), S.STOPPED, STOP, {}),
    (at(S.BACKOFF, failures=3), Slept(), S.CONNECTING, (Connect(),), {}),
    (at(S.PARKED), Slept(), S.CONNECTING, (Connect(),), {}),
    (at(S.PARKED, VISITOR), Slept(), S.WAITING, (TakeSlot(),), {}),
    (at(S.POLLING, VISITOR), Slept(), S.WAITING, (TakeSlot(),), {}),
    (at(S.BACKOFF), Stop(), S.STOPPED, STOP, {}),
    # connected
    (
        at(S.CONNECTING),
        Connected(idle_capable=True),
        S.SYNCING,
        (OpenFolder(), MarkConnected(), SyncFolder()),
        {"idle": True},
    ),
    (
        at(S.CONNECTING),
        Connected(idle_capable=False),
        S.SYNCING,
        (OpenFolder(), MarkConnected(), SyncFolder()),
        {},
    ),
    (
        at(S.CONNECTING, POLLER, poll_index=2),
        Connected(True),
        S.POLLING,
        (MarkConnected(), CheckPolled(0)),
        {"poll_index": 0},
    ),
    (
        at(S.CONNECTING, VISITOR, holding_slot=True),
        Connected(False),
        S.POLLING,
        (MarkConnected(), CheckPolled(0)),
        {},
    ),
    # a listener catching up and waiting
    (at(S.SYNCING, idle=True), CaughtUp(False, None, None), S.IDLE, (WaitForChanges(120.0),), {}),
    (at(S.SYNCING, idle=True), CaughtUp(False, None, 30.0), S.IDLE, (WaitForChanges(30.0),), {}),
    (at(S.SYNCING, idle=True), CaughtUp(False, None, 0.01), S.IDLE, (WaitForChanges(0.05),), {}),
    (at(S.SYNCING), CaughtUp(False, None, None), S.POLLING, (WaitForTimer(60.0),), {}),
    (at(S.SYNCING, idle=True), CaughtUp(True, None, None), S.SYNCING, (SyncFolder(),), {}),
    (
        at(S.SYNCING, idle=True),
        CaughtUp(False, "EXPUNGE storm", 0.0),
        S.SYNCING,
        (SyncFolder("EXPUNGE storm"),),
        {},
    ),
    (at(S.SYNCING, idle=True), CaughtUp(False, None, 0.0), S.CONNECTING, (*RENEW, Connect()), {}),
    (at(S.IDLE, idle=True), ChangesSeen(True, None), S.SYNCING, (SyncFolder(),), {}),
    (
        at(S.IDLE, idle=True),
        ChangesSeen(False, "[CLOSED]"),
        S.SYNCING,
        (SyncFolder("[CLOSED]"),),
        {},
    ),
    (at(S.IDLE, idle=True), WaitEnded(None), S.SYNCING, (SyncFolder(RECONCILIATION),), {}),
    (at(S.IDLE, idle=True), WaitEnded(-1.0), S.CONNECTING, (*RENEW, Connect()), {}),
    (at(S.POLLING), WaitEnded(5.0), S.SYNCING, (SyncFolder(RECONCILIATION),), {}),
    (at(S.POLLING), WaitEnded(0.0), S.CONNECTING, (*RENEW, Connect()), {}),
    (at(S.IDLE, idle=True), Stop(), S.STOPPED, STOP, {}),
    (at(S.SYNCING), Stop(), S.STOPPED, STOP, {}),
    # a poller taking its folders in turn
    (
        at(S.POLLING, POLLER, poll_index=1),
        PolledChecked(1, True, None, 0.5),
        S.SYNCING,
        (SyncPolled(1),),
        {},
    ),
    (
        at(S.POLLING, POLLER, poll_index=1),
        PolledChecked(1, False, None, 0.5),
        S.POLLING,
        (WaitForTimer(20.0),),
        {"poll_index": 2},
    ),
    (
        at(S.POLLING, POLLER),
        PolledChecked(0, False, None, 1.0),
        S.POLLING,
        (WaitForTimer(22.0),),
        {"poll_index": 1},
    ),
    (
        at(S.SYNCING, POLLER, poll_index=2),
        PolledSynced(2, 10.0, 0.5),
        S.POLLING,
        (WaitForTimer(10.0),),
        {"poll_index": 0},
    ),
    (at(S.SYNCING, POLLER), PolledSynced(0, 0.0, 0.5), S.CONNECTING, (*RENEW, Connect()), {}),
    (at(S.POLLING, POLLER, poll_index=2), WaitEnded(None), S.POLLING, (CheckPolled(2),), {}),
    (at(S.POLLING, POLLER), WaitEnded(-3.0), S.CONNECTING, (*RENEW, Connect()), {}),
    # a visiting poller: each folder once, then the shared connection goes back
    (
        at(S.POLLING, VISITOR, holding_slot=True),
        PolledChecked(0, False, None, 0.5),
        S.POLLING,
        (CheckPolled(1),),
        {},
    ),
    (
        at(S.POLLING, VISITOR, holding_slot=True),
        PolledChecked(0, True, 0.0, 0.5),
        S.SYNCING,
        (SyncPolled(0),),
        {},
    ),
    (
        at(S.SYNCING, VISITOR, holding_slot=True),
        PolledSynced(0, None, 0.5),
        S.POLLING,
        (CheckPolled(1),),
        {},
    ),
    (
        at(S.SYNCING, VISITOR, holding_slot=True, failures=4),
        PolledSynced(1, 0.0, 0.5),
        S.POLLING,
        (Disconnect(give_back_slot=True), Sleep(60.0)),
        {"failures": 0, "holding_slot": False},
    ),
    (
        at(S.POLLING, VISITOR, holding_slot=True),
        PolledChecked(1, False, None, 0.0),
        S.POLLING,
        (Disconnect(give_back_slot=True), Sleep(54.0)),
        {"holding_slot": False},
    ),
    (
        at(S.SYNCING, VISITOR, holding_slot=True),
        Stop(),
        S.STOPPED,
        (Disconnect(give_back_slot=True),),
        {"holding_slot": False},
    ),
    # failures, by class
    (
        at(S.CONNECTING),
        failed(FailureKind.TRANSIENT),
        S.BACKOFF,
        backoff(TRANSIENT, 1.0, 1),
        {"failures": 1},
    ),
    (
        at(S.SYNCING, failures=4),
        failed(FailureKind.TRANSIENT, connected_for_s=5.0),
        S.BACKOFF,
        backoff(TRANSIENT, 16.0, 5),
        {"failures": 5},
    ),
    (
        at(S.IDLE, failures=9),
        failed(FailureKind.TRANSIENT, connected_for_s=120.0),
        S.BACKOFF,
        backoff(TRANSIENT, 1.0, 1),
        {"failures": 1},
    ),
    (
        at(S.BACKOFF, failures=9),
        failed(FailureKind.TRANSIENT),
        S.BACKOFF,
        backoff(TRANSIENT, 300.0, 10),
        {"failures": 10},
    ),
    (
        at(S.CONNECTING),
        failed(FailureKind.THROTTLED, hint_s=60.0),
        S.BACKOFF,
        backoff(Failure(FailureKind.THROTTLED, "it broke", 60.0), 60.0, 1),
        {"failures": 1},
    ),
    (
        at(S.CONNECTING),
        failed(FailureKind.THROTTLED),
        S.BACKOFF,
        backoff(Failure(FailureKind.THROTTLED, "it broke"), 1.0, 1),
        {"failures": 1},
    ),
    (
        at(S.SYNCING),
        failed(FailureKind.UNEXPECTED),
        S.BACKOFF,
        backoff(Failure(FailureKind.UNEXPECTED, "it broke"), 150.0, 1),
        {"failures": 1},
    ),
    (
        at(S.POLLING, VISITOR, holding_slot=True),
        failed(FailureKind.TRANSIENT),
        S.BACKOFF,
        backoff(TRANSIENT, 1.0, 1, give_back_slot=True),
        {"failures": 1, "holding_slot": False},
    ),
    (
        at(S.CONNECTING, failures=2),
        failed(FailureKind.PERMANENT),
        S.PARKED,
        (RecordFailure(Failure(FailureKind.PERMANENT, "it broke")), Disconnect(), Sleep(300.0)),
        {},
    ),
    (
        at(S.SYNCING),
        failed(FailureKind.FOLDER_MISSING),
        S.PARKED,
        (
            RecordFailure(Failure(FailureKind.FOLDER_MISSING, "it broke")),
            Disconnect(),
            Sleep(300.0),
        ),
        {},
    ),
    (
        at(S.CONNECTING, VISITOR, holding_slot=True),
        failed(FailureKind.PERMANENT),
        S.PARKED,
        (
            RecordFailure(Failure(FailureKind.PERMANENT, "it broke")),
            Disconnect(give_back_slot=True),
            Sleep(300.0),
        ),
        {"holding_slot": False},
    ),
    (
        at(S.CONNECTING),
        failed(FailureKind.STALE_LOGIN),
        S.CONNECTING,
        (
            Log(logging.INFO, "access token refused; refreshing it and trying once more"),
            Connect(refresh_token=True),
        ),
        {},
    ),
    (
        at(S.IDLE),
        failed(FailureKind.LEASE_LOST),
        S.STOPPED,
        (Log(logging.WARNING, "lease lost; stopping"), Disconnect()),
        {},
    ),
    (
        at(S.BACKOFF),
        failed(FailureKind.LEASE_LOST),
        S.STOPPED,
        (Log(logging.WARNING, "lease lost; stopping"), Disconnect()),
        {},
    ),
    (
        at(S.SYNCING, VISITOR, holding_slot=True),
        failed(FailureKind.STOPPING),
        S.STOPPED,
        (
            Log(logging.INFO, "connection closed to stop (it broke)"),
            Disconnect(give_back_slot=True),
        ),
        {"holding_slot": False},
    ),
    # stopped is the end
    (at(S.STOPPED), Slept(), S.STOPPED, (), {}),
    (at(S.STOPPED), failed(FailureKind.TRANSIENT), S.STOPPED, (), {}),
    (at(S.STOPPED), Stop(), S.STOPPED, (), {}),
]
TRANSITION_IDS = [
    "starting-slept-connects",
    "starting-slept-visitor-waits-for-slot",
    "starting-stop",
    "waiting-slot-taken",
    "waiting-stop",
    "backoff-slept",
    "parked-slept",
    "parked-slept-visitor",
    "visitor-round-wait-slept",
    "backoff-stop",
    "connected-with-idle",
    "connected-without-idle",
    "poller-connected-starts-at-first-folder",
    "visitor-connected",
    "caught-up-idles",
    "caught-up-idle-until-renewal",
    "caught-up-idle-renewal-floor",
    "caught-up-without-idle-polls",
    "caught-up-new-mail-meanwhile",
    "caught-up-verify-meanwhile-before-renewal",
    "caught-up-renewal-due",
    "idle-new-mail",
    "idle-verify",
    "idle-reissue-reconciles",
    "idle-timer-renewal-due",
    "poll-timer-reconciles",
    "poll-timer-renewal-due",
    "idle-stop",
    "syncing-stop",
    "poller-changed-syncs",
    "poller-unchanged-waits-next",
    "poller-wait-jittered",
    "poller-synced-wraps-around-until-renewal",
    "poller-synced-renewal-due",
    "poller-timer-checks-next",
    "poller-timer-renewal-due",
    "visitor-next-folder",
    "visitor-changed-syncs-no-renewal",
    "visitor-synced-next-folder",
    "visitor-round-done-resets-failures",
    "visitor-round-done-jittered",
    "visitor-stop-gives-slot-back",
    "transient-never-connected",
    "transient-again-doubles",
    "transient-after-stable-resets",
    "transient-capped",
    "throttled-hint-is-floor",
    "throttled-without-hint",
    "unexpected-backs-off-long",
    "visitor-failure-gives-slot-back",
    "permanent-parks",
    "folder-missing-parks",
    "visitor-permanent-gives-slot-back",
    "stale-token-retried-once",
    "lease-lost-stops",
    "lease-lost-while-recording",
    "stopping-is-no-failure",
    "stopped-ignores-slept",
    "stopped-ignores-failure",
    "stopped-ignores-stop",
]


@pytest.mark.parametrize(
    ("before", "event", "state", "actions", "changes"), TRANSITIONS, ids=TRANSITION_IDS
)
def test_transition(
    before: Folder,
    event: Event,
    state: FolderState,
    actions: tuple[Action, ...],
    changes: dict[str, object],
) -> None:
    after = Folder(**{**vars(before), "state": state, **changes})  # type: ignore[arg-type]
    assert decide_next(before, event) == Transition(after, actions)


def test_every_state_is_reached_and_left() -> None:
    reached = {state for _b, _e, state, _a, _c in TRANSITIONS} | {start(VISITOR).folder.state}
    left = {before.state for before, _e, _s, _a, _c in TRANSITIONS}
    assert reached == set(FolderState)
    assert left == set(FolderState)


def test_start_waits_out_the_stagger() -> None:
    assert start(LISTENER) == Transition(Folder(LISTENER), (Sleep(2.0),))


@pytest.mark.parametrize(
    ("before", "event"),
    [
        (at(S.IDLE, idle=True), Connected(True)),
        (at(S.SYNCING), Slept()),
        (at(S.POLLING), Slept()),
        (at(S.CONNECTING), CaughtUp(False, None, None)),
        (at(S.SYNCING), ChangesSeen(True, None)),
        (at(S.STARTING), SlotTaken()),
        (at(S.IDLE, POLLER), PolledSynced(0, None, 0.5)),
    ],
    ids=[
        "connected-twice",
        "slept-while-connected",
        "listener-poll-timer-is-no-sleep",
        "caught-up-before-connected",
        "changes-outside-idle",
        "slot-not-asked-for",
        "synced-outside-syncing",
    ],
)
def test_events_that_cannot_happen_are_refused(before: Folder, event: Event) -> None:
    with pytest.raises(ValueError, match="no transition"):
        decide_next(before, event)


@pytest.mark.parametrize(
    ("error", "stopping", "stale_token", "kind", "message", "hint_s"),
    [
        (ConnectionLost("reset"), False, False, FailureKind.TRANSIENT, "reset", None),
        (HostUnresolvable("no host"), False, False, FailureKind.TRANSIENT, "no host", None),
        (ImapCommandFailed("NO"), False, False, FailureKind.TRANSIENT, "NO", None),
        (PublishFailed("redis"), False, False, FailureKind.TRANSIENT, "redis", None),
        (StorageUnavailable("db"), False, False, FailureKind.TRANSIENT, "db", None),
        (TokenEndpointUnavailable("5xx"), False, False, FailureKind.TRANSIENT, "5xx", None),
        (ServerThrottled("slow", 3.0), False, False, FailureKind.THROTTLED, "slow", 3.0),
        (ServerThrottled("slow"), False, False, FailureKind.THROTTLED, "slow", None),
        (AuthenticationFailed("rejected"), False, False, FailureKind.PERMANENT, "rejected", None),
        (AuthenticationFailed("rejected"), False, True, FailureKind.STALE_LOGIN, "rejected", None),
        (ConnectionLost("reset"), False, True, FailureKind.TRANSIENT, "reset", None),
        (TlsVerificationFailed("ca"), False, False, FailureKind.PERMANENT, "ca", None),
        (SecretUndecryptable("key"), False, False, FailureKind.PERMANENT, "key", None),
        (ReauthorizationRequired("revoked"), False, False, FailureKind.PERMANENT, "revoked", None),
        (FolderMissing("gone"), False, False, FailureKind.FOLDER_MISSING, "gone", None),
        (LeaseLost("fence"), False, False, FailureKind.LEASE_LOST, "fence", None),
        (KeyError("x"), False, False, FailureKind.UNEXPECTED, "KeyError", None),
        (InvalidSettings("bad"), False, False, FailureKind.UNEXPECTED, "bad", None),
        (ConnectionLost("reset"), True, False, FailureKind.STOPPING, "ConnectionLost", None),
        (LeaseLost("fence"), True, False, FailureKind.STOPPING, "LeaseLost", None),
        (KeyError("x"), True, False, FailureKind.STOPPING, "KeyError", None),
    ],
    ids=[
        "connection-lost",
        "host-unresolvable",
        "command-failed",
        "publish-failed",
        "storage-unavailable",
        "token-endpoint-down",
        "throttled-with-hint",
        "throttled",
        "login-rejected",
        "stale-token-refused",
        "stale-token-but-not-a-refusal",
        "tls-not-trusted",
        "secret-undecryptable",
        "grant-revoked",
        "folder-missing",
        "lease-lost-before-permanent",
        "not-ours",
        "ours-but-neither-transient-nor-permanent",
        "stopping-transient",
        "stopping-lease-lost",
        "stopping-unexpected",
    ],
)
def test_classify_failure(
    error: BaseException,
    stopping: bool,
    stale_token: bool,
    kind: FailureKind,
    message: str,
    hint_s: float | None,
) -> None:
    failure = classify_failure(error, stopping=stopping, stale_token=stale_token)
    assert failure == Failure(kind, message, hint_s)


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        (FailureKind.TRANSIENT, "transient"),
        (FailureKind.THROTTLED, "throttled"),
        (FailureKind.PERMANENT, "permanent"),
        (FailureKind.FOLDER_MISSING, "permanent"),
        (FailureKind.UNEXPECTED, "unexpected"),
    ],
    ids=["transient", "throttled", "permanent", "folder-missing-counts-as-permanent", "unexpected"],
)
def test_failure_metric_labels(kind: FailureKind, label: str) -> None:
    assert kind.label == label


def test_state_values_are_the_documented_gauge_labels() -> None:
    assert [state.value for state in FolderState] == [
        "starting",
        "waiting",
        "connecting",
        "syncing",
        "idle",
        "polling",
        "backoff",
        "parked",
        "stopped",
    ]


@pytest.mark.parametrize(
    ("message", "goodbye", "expected"),
    [
        ("socket error: EOF", None, "socket error: EOF"),
        (
            "socket error: EOF",
            "Server shutting down.",
            "socket error: EOF; the server said: Server shutting down.",
        ),
        ("BYE Server shutting down.", "Server shutting down.", "BYE Server shutting down."),
    ],
    ids=["no-goodbye", "goodbye-added", "goodbye-already-there"],
)
def test_describe_failure(message: str, goodbye: str | None, expected: str) -> None:
    assert describe_failure(message, goodbye) == expected
