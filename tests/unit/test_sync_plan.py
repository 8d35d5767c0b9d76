import pytest

from email_service.model import FolderCursor
from email_service.sync.plan import CatchUp, Rebaseline, plan_baseline, plan_sync, split_batches


@pytest.mark.parametrize(
    ("cursor", "uid_validity", "uid_next", "expected"),
    [
        (None, 7, None, Rebaseline("no cursor yet")),
        (FolderCursor(7, 42), 7, 43, CatchUp(42)),
        (FolderCursor(7, 42), 7, None, CatchUp(42)),
        (FolderCursor(7, 42), 8, 43, Rebaseline("UIDVALIDITY changed from 7 to 8")),
        (FolderCursor(7, 0), 7, 1, CatchUp(0)),
        (FolderCursor(7, 119), 7, 120, CatchUp(119)),
        (
            FolderCursor(7, 14),
            7,
            2,
            Rebaseline("UIDNEXT 2 is not above the cursor's uid 14 at the same UIDVALIDITY 7"),
        ),
        (
            FolderCursor(7, 5),
            7,
            5,
            Rebaseline("UIDNEXT 5 is not above the cursor's uid 5 at the same UIDVALIDITY 7"),
        ),
    ],
    ids=[
        "new-folder",
        "same-uidvalidity",
        "no-uidnext",
        "uidvalidity-changed",
        "empty-cursor",
        "baseline-of-an-empty-folder",
        "uids-started-again",
        "uidnext-at-the-cursor",
    ],
)
def test_plan_sync(
    cursor: FolderCursor | None, uid_validity: int, uid_next: int | None, expected: object
) -> None:
    assert plan_sync(cursor, uid_validity, uid_next) == expected


@pytest.mark.parametrize(
    ("uids", "window", "uid_next", "expected_last_uid"),
    [
        (list(range(1, 101)), 5, 101, 95),
        ([3, 9, 20], 5, 21, 2),
        ([3, 9, 20, 31, 40, 57], 2, 58, 39),
        ([], 5, 120, 119),
        ([], 5, None, 0),
        ([4, 8], 0, 9, 8),
        ([8, 4], 1, 9, 7),
    ],
    ids=[
        "large-folder",
        "fewer-than-window",
        "sparse-uids",
        "empty-folder-uidnext",
        "empty-folder-no-uidnext",
        "window-zero",
        "unsorted-input",
    ],
)
def test_plan_baseline(
    uids: list[int], window: int, uid_next: int | None, expected_last_uid: int
) -> None:
    cursor = plan_baseline(uids, window=window, uid_validity=3, uid_next=uid_next)
    assert cursor == FolderCursor(3, expected_last_uid)


@pytest.mark.parametrize(
    ("uids", "size", "expected"),
    [
        ([], 3, []),
        ([5, 1, 3], 2, [[1, 3], [5]]),
        (list(range(1, 7)), 3, [[1, 2, 3], [4, 5, 6]]),
    ],
    ids=["empty", "unsorted-remainder", "exact"],
)
def test_split_batches(uids: list[int], size: int, expected: list[list[int]]) -> None:
    assert split_batches(uids, size) == expected
