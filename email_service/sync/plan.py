"""Which UIDs a folder listener fetches next (core: data in, decision out).

A folder whose cursor is missing, or whose UIDVALIDITY (or UIDNEXT) no longer fits the
cursor, is *re-baselined*, whether that is seen at open or while connected
(``folder_check``): the cursor is set just below the newest ``IMAP_MAX_EMAILS_PER_SYNC``
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


def plan_sync(
    cursor: FolderCursor | None, uid_validity: int, uid_next: int | None = None
) -> FetchPlan:
    """Decide between catching up from the cursor and starting over.

    Every UID the cursor passed is below the folder's UIDNEXT, so a UIDNEXT at or below the
    cursor means the folder's UIDs started again without a new UIDVALIDITY (which RFC 3501
    forbids, and a recreated folder on some servers does): that is a new folder too.
    """
    if cursor is None:
        return Rebaseline("no cursor yet")
    if cursor.uid_validity != uid_validity:
        return Rebaseline(f"UIDVALIDITY changed from {cursor.uid_validity} to {uid_validity}")
    if uid_next is not None and uid_next <= cursor.last_uid:
        return Rebaseline(
            f"UIDNEXT {uid_next} is not above the cursor's uid {cursor.last_uid} "
            f"at the same UIDVALIDITY {uid_validity}"
        )
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
