"""What a failure of a connection means: one table on our error types (core).

``classify_failure`` turns whatever an action raised into a ``Failure`` the folder's state
machine (``sync.folder_machine``) decides on: back off, park, stop, or log in once more.
The most specific class of the error wins, whatever the order of the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from email_service.errors import (
    AuthenticationFailed,
    EmailServiceError,
    FolderMissing,
    LeaseLost,
    PermanentError,
    ServerThrottled,
    TransientError,
)


class FailureKind(StrEnum):
    """How a failure is handled (``classify_failure``)."""

    TRANSIENT = "transient"  #: back off and connect again
    THROTTLED = "throttled"  #: the same, at least as long as the server asked
    PERMANENT = "permanent"  #: record and park
    FOLDER_MISSING = "folder_missing"  #: permanent, for the one folder
    UNEXPECTED = "unexpected"  #: not one of ours: a bug; back off long
    LEASE_LOST = "lease_lost"  #: another worker owns the provider: stop
    STALE_LOGIN = "stale_login"  #: an OAuth token that was not fresh was refused: renew once
    STOPPING = "stopping"  #: a stop cut the connection: not a failure

    @property
    def label(self) -> str:
        """The ``kind`` label of ``email_service_listener_errors_total``."""
        return FailureKind.PERMANENT.value if self is FailureKind.FOLDER_MISSING else self.value


#: Our error classes and what a failure of each means; the most specific one wins.
FAILURE_KINDS: dict[type[BaseException], FailureKind] = {
    LeaseLost: FailureKind.LEASE_LOST,
    FolderMissing: FailureKind.FOLDER_MISSING,
    PermanentError: FailureKind.PERMANENT,
    ServerThrottled: FailureKind.THROTTLED,
    TransientError: FailureKind.TRANSIENT,
}


@dataclass(frozen=True)
class Failure:
    """A failure, classified; ``message`` is what is logged and recorded."""

    kind: FailureKind
    message: str
    #: The server's own hint of how long to wait (throttled), in seconds.
    hint_s: float | None = None


def classify_failure(
    error: BaseException, *, stopping: bool = False, stale_token: bool = False
) -> Failure:
    """What ``error`` means for the connection that raised it.

    ``stopping``: a stop was requested (it cuts the connection, so whatever failed is not
    the server's fault); ``stale_token``: the login was with an OAuth token that was not
    just issued, and not already a retry.
    """
    if stopping:
        return Failure(FailureKind.STOPPING, type(error).__name__)
    kind = next(
        (FAILURE_KINDS[cls] for cls in type(error).__mro__ if cls in FAILURE_KINDS),
        FailureKind.UNEXPECTED,
    )
    message = str(error) if isinstance(error, EmailServiceError) else type(error).__name__
    if stale_token and isinstance(error, AuthenticationFailed):
        kind = FailureKind.STALE_LOGIN
    hint_s = error.retry_after_s if isinstance(error, ServerThrottled) else None
    return Failure(kind, message, hint_s)


def describe_failure(message: str, goodbye: str | None) -> str:
    """``message``, with the server's BYE text when the library's error left it out."""
    if goodbye and goodbye not in message:
        return f"{message}; the server said: {goodbye}"
    return message
