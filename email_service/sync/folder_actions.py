"""The actions of the folder's state machine: what a shell does next (core: data only).

``sync.folder_machine.decide_next`` returns them in order; ``sync.connection_loop`` carries
out those about the connection, ``FolderListener`` and ``FolderPoller`` those about folders.
Each says which event it feeds back; the others feed back nothing unless they fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_service.sync.failures import Failure


@dataclass(frozen=True)
class Sleep:
    """Wait, ended early by a stop (feeds ``Slept`` or ``Stop``)."""

    seconds: float


@dataclass(frozen=True)
class TakeSlot:
    """Wait for a shared connection slot (``SlotTaken`` or ``Stop``)."""


@dataclass(frozen=True)
class Connect:
    """Open a session and log in (``Connected``); ``refresh_token``: with a new token."""

    refresh_token: bool = False


@dataclass(frozen=True)
class Disconnect:
    """Log out (if connected) and give the shared slot back if ``give_back_slot``."""

    give_back_slot: bool = False


@dataclass(frozen=True)
class MarkConnected:
    """Record ``status = connected`` and the capabilities on the provider row."""


@dataclass(frozen=True)
class RecordFailure:
    """Log, count and record ``failure`` on the provider row (a lost lease: ``Failed``)."""

    failure: Failure


@dataclass(frozen=True)
class CountRenewal:
    """Log and count a login renewed because its token is due."""


@dataclass(frozen=True)
class Log:
    level: int
    message: str


@dataclass(frozen=True)
class OpenFolder:
    """EXAMINE the folder and take its cursor, re-baselined if it is not the folder's."""


@dataclass(frozen=True)
class SyncFolder:
    """Publish every UID above the cursor (``CaughtUp``); EXAMINE again first when
    ``verify`` says why, or when the server said something that asks for it."""

    verify: str | None = None


@dataclass(frozen=True)
class WaitForChanges:
    """IDLE for at most ``timeout_s`` (``ChangesSeen``, ``WaitEnded`` or ``Stop``)."""

    timeout_s: float


@dataclass(frozen=True)
class WaitForTimer:
    """Stay connected and wait ``timeout_s`` (``WaitEnded`` or ``Stop``)."""

    timeout_s: float


@dataclass(frozen=True)
class CheckPolled:
    """The poller looks at folder ``index`` (``PolledChecked``)."""

    index: int


@dataclass(frozen=True)
class SyncPolled:
    """The poller catches folder ``index`` up (``PolledSynced``)."""

    index: int


Action = (
    Sleep
    | TakeSlot
    | Connect
    | Disconnect
    | MarkConnected
    | RecordFailure
    | CountRenewal
    | Log
    | OpenFolder
    | SyncFolder
    | WaitForChanges
    | WaitForTimer
    | CheckPolled
    | SyncPolled
)
