"""What untagged responses and UID searches imply about the folder, on literal server bytes."""

from __future__ import annotations

import pytest

from email_service.sync.folder_check import (
    Signals,
    Untagged,
    check_search,
    parse_untagged,
    read_signals,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"* 3 EXISTS", Untagged("EXISTS", 3)),
        (b"* 1 EXPUNGE", Untagged("EXPUNGE", 1)),
        (b"* 0 RECENT", Untagged("RECENT", 0)),
        (b"* 12 FETCH (FLAGS (\\Seen))", Untagged("FETCH", 12)),
        (b"* OK [CLOSED] Ok", Untagged("OK", code="CLOSED", text="Ok")),
        (
            b"* OK [UIDVALIDITY 1796158891] Ok",
            Untagged("OK", code="UIDVALIDITY 1796158891", text="Ok"),
        ),
        (b"* OK Still here", Untagged("OK", text="Still here")),
        (
            b"* BYE IMAP session state is inconsistent, please relogin.",
            Untagged("BYE", text="IMAP session state is inconsistent, please relogin."),
        ),
        (b"* BYE", Untagged("BYE")),
        (b"+ idling", None),
        (b"A0007 OK Idle completed.", None),
        (b"", None),
    ],
    ids=[
        "exists",
        "expunge",
        "recent",
        "fetch",
        "closed",
        "response-code-with-argument",
        "dovecot-still-here",
        "dovecot-bye",
        "bare-bye",
        "continuation",
        "tagged",
        "empty",
    ],
)
def test_parse_untagged(line: bytes, expected: Untagged | None) -> None:
    assert parse_untagged(line) == expected


def lines(*raw: bytes) -> list[Untagged]:
    parsed = [parse_untagged(line) for line in raw]
    return [response for response in parsed if response is not None]


@pytest.mark.parametrize(
    ("responses", "exists", "expected", "exists_after"),
    [
        (lines(b"* 6 EXISTS", b"* 1 RECENT"), 5, Signals(new_mail=True), 6),
        (lines(b"* 1 RECENT"), 5, Signals(new_mail=True), 5),
        (lines(b"* 0 RECENT"), 5, Signals(), 5),
        (lines(b"* 5 EXISTS"), 5, Signals(new_mail=True), 5),
        (lines(b"* 1 EXISTS"), None, Signals(new_mail=True), 1),
        (lines(b"* OK Still here"), 5, Signals(), 5),
        (lines(b"* 3 EXPUNGE", b"* 5 EXISTS"), 5, Signals(new_mail=True), 5),
        (lines(*[b"* 1 EXPUNGE"] * 3), 10, Signals(), 7),
        (
            lines(*[b"* 1 EXPUNGE"] * 3),
            3,
            Signals(verify="every message of the folder was expunged (3 EXPUNGE)"),
            0,
        ),
        (
            lines(*[b"* 1 EXPUNGE"] * 10),
            100,
            Signals(verify="10 messages expunged at once"),
            90,
        ),
        (
            lines(b"* 1 EXISTS"),
            5,
            Signals(verify="EXISTS 1 is below the 5 messages known, without an EXPUNGE"),
            1,
        ),
        (
            lines(b"* 1 EXISTS", b"* 2 EXISTS"),
            14,
            Signals(
                new_mail=True,
                verify="EXISTS 1 is below the 14 messages known, without an EXPUNGE",
            ),
            2,
        ),
        (
            lines(b"* OK [CLOSED] Ok"),
            5,
            Signals(verify="the server closed the folder ([CLOSED])"),
            5,
        ),
        (
            lines(
                b"* NO Internal error occurred. Refer to server log for more information. "
                b"[2026-12-01 21:51:46]"
            ),
            3,
            Signals(
                verify="the server said NO: Internal error occurred. Refer to server log for "
                "more information. [2026-12-01 21:51:46]"
            ),
            3,
        ),
        (
            lines(b"* BYE IMAP session state is inconsistent, please relogin."),
            5,
            Signals(goodbye="IMAP session state is inconsistent, please relogin."),
            5,
        ),
    ],
    ids=[
        "dovecot-new-mail",
        "recent-alone",
        "no-recent",
        "exists-unchanged",
        "count-unknown",
        "dovecot-keepalive",
        "expunge-then-new",
        "a-few-expunged",
        "cyrus-folder-recreated",
        "expunge-storm",
        "courier-recreated-cursor-5",
        "courier-recreated-cursor-14",
        "closed",
        "dovecot-maildir-recreated",
        "dovecot-recreated",
    ],
)
def test_read_signals(
    responses: list[Untagged], exists: int | None, expected: Signals, exists_after: int | None
) -> None:
    assert read_signals(responses, exists) == (expected, exists_after)


@pytest.mark.parametrize(
    ("found", "last_uid", "announced", "expected"),
    [
        ([9], 9, 0, None),
        ([10, 11], 9, 2, None),
        ([10, 11, 12], 9, 1, None),
        ([], 0, 0, None),
        ([], 9, 0, None),
        ([7], 9, 0, "UID SEARCH found uid 7, below the cursor's uid 9"),
        ([1], 5, 1, "UID SEARCH found uid 1, below the cursor's uid 5"),
        (
            [9],
            9,
            1,
            "EXISTS announced 1 new messages but UID SEARCH found 0 above the cursor's uid 9",
        ),
        (
            [6, 7, 8, 9],
            5,
            9,
            "EXISTS announced 9 new messages but UID SEARCH found 4 above the cursor's uid 5",
        ),
    ],
    ids=[
        "nothing-new",
        "two-new-as-announced",
        "more-than-announced",
        "empty-folder",
        "emptied-folder",
        "newest-gone",
        "courier-new-folder-small",
        "announced-but-at-the-cursor",
        "courier-new-folder-larger",
    ],
)
def test_check_search(
    found: list[int], last_uid: int, announced: int, expected: str | None
) -> None:
    assert check_search(found, last_uid, announced) == expected
