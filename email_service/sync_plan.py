"""Which UIDs a folder listener fetches next (core: data in, decision out).

A folder whose cursor is missing, or whose UIDVALIDITY no longer matches the cursor's, is
*re-baselined*: the cursor is set just below the newest ``IMAP_MAX_EMAILS_PER_SYNC``
messages, so those are published and older mail is not replayed as new. Otherwise every
UID above the cursor is fetched, in batches, with no cap per wake-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from email_service.model import FolderCursor


@dataclass(frozen=True)
class Rebaseline:
    """Set a new cursor first; ``reason`` is for the log."""

    reason: str


@dataclass(frozen=True)
class CatchUp:
    """Fetch every UID above ``after_uid``."""

    after_uid: int


FetchPlan = Rebaseline | CatchUp


def plan_sync(cursor: FolderCursor | None, uid_validity: int) -> FetchPlan:
    """Decide between catching up from the cursor and starting over."""
    if cursor is None:
        return Rebaseline("no cursor yet")
    if cursor.uid_validity != uid_validity:
        return Rebaseline(f"UIDVALIDITY changed from {cursor.uid_validity} to {uid_validity}")
    return CatchUp(cursor.last_uid)


def plan_baseline(
    uids: Sequence[int], *, window: int, uid_validity: int, uid_next: int | None
) -> FolderCursor:
    """The cursor that makes the newest ``window`` of ``uids`` the only ones published.

    With no message in the folder (or a window of 0), the cursor sits at the highest UID
    the folder has used, so only mail arriving from now on is published.
    """
    ordered = sorted(uids)
    if window > 0 and ordered:
        newest = ordered[-window:]
        return FolderCursor(uid_validity, newest[0] - 1)
    if ordered:
        return FolderCursor(uid_validity, ordered[-1])
    return FolderCursor(uid_validity, max((uid_next or 1) - 1, 0))


def split_batches(uids: Sequence[int], size: int) -> list[list[int]]:
    """``uids`` in ascending order, cut into lists of at most ``size``."""
    ordered = sorted(uids)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]
