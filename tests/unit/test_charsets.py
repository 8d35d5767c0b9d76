"""decode_octets: text from octets under a charset label, and what was not as labelled."""

from __future__ import annotations

import pytest

from email_service.ingest.charsets import (
    GUESSED_CHARSET,
    MAX_ISSUES,
    UNKNOWN_CHARSET,
    WRONG_CHARSET,
    CharsetIssue,
    CharsetLog,
    decode_octets,
)


@pytest.mark.parametrize(
    ("data", "declared", "hint", "text", "issues"),
    [
        ("café".encode(), "utf-8", None, "café", []),
        ("café".encode("latin-1"), "iso-8859-1", None, "café", []),
        ("5 € “net”".encode("cp1252"), "iso-8859-1", None, "5 € “net”", []),
        ("Привет".encode("koi8-r"), "KOI8-R", None, "Привет", []),
        (b"plain", "us-ascii", None, "plain", []),
        ("café".encode(), "us-ascii", None, "café", [("1", "us-ascii", "utf-8", WRONG_CHARSET)]),
        (
            "café".encode("latin-1"),
            "utf-8",
            None,
            "café",
            [("1", "utf-8", "cp1252", WRONG_CHARSET)],
        ),
        (
            "café".encode(),
            "x-no-such",
            None,
            "café",
            [("1", "x-no-such", "utf-8", UNKNOWN_CHARSET)],
        ),
        ("café".encode(), None, None, "café", []),
        ("café".encode("latin-1"), None, None, "café", [("1", "", "cp1252", GUESSED_CHARSET)]),
        (
            "Привет".encode("koi8-r"),
            None,
            "koi8-r",
            "Привет",
            [("1", "", "koi8-r", GUESSED_CHARSET)],
        ),
        ('"café"'.encode(), '"UTF-8"', None, '"café"', []),
    ],
    ids=[
        "utf8-as-declared",
        "latin1-as-declared",
        "latin1-label-windows-1252-octets",
        "koi8-r-label-case",
        "ascii",
        "utf8-under-ascii-label",
        "latin1-under-utf8-label",
        "unknown-label",
        "unlabelled-utf8-is-no-issue",
        "unlabelled-8bit-guessed",
        "unlabelled-with-hint",
        "quoted-label",
    ],
)
def test_decode_octets(
    data: bytes,
    declared: str | None,
    hint: str | None,
    text: str,
    issues: list[tuple[str, str, str, str]],
) -> None:
    log = CharsetLog()

    assert decode_octets(data, declared, part="1", log=log, hint=hint) == text
    assert log.issues == [CharsetIssue(*issue) for issue in issues]


def test_octets_no_charset_takes_are_replaced_and_flagged_lossy() -> None:
    log = CharsetLog()

    text = decode_octets(b"a\x81b", "utf-8", part="2", log=log)

    assert text == "a\ufffdb"
    assert log.issues == [CharsetIssue("2", "utf-8", "cp1252", WRONG_CHARSET, lossy=True)]


@pytest.mark.parametrize(
    ("final", "text", "issues"),
    [
        (False, "Grü", []),
        (True, "GrÃ¼Ã", [CharsetIssue("1", "utf-8", "cp1252", WRONG_CHARSET)]),
    ],
    ids=["prefix-drops-the-cut-character", "whole-input-cut-is-mislabelled"],
)
def test_octets_cut_inside_a_character(final: bool, text: str, issues: list[CharsetIssue]) -> None:
    log = CharsetLog()

    cut = "Grüß".encode()[:-1]

    assert decode_octets(cut, "utf-8", part="1", log=log, final=final) == text
    assert log.issues == issues


def test_issues_are_recorded_once_each_and_bounded() -> None:
    log = CharsetLog()
    for part in range(MAX_ISSUES + 5):
        for _ in range(2):
            decode_octets(b"caf\xe9", "x-unknown", part=str(part), log=log)

    assert len(log.issues) == MAX_ISSUES
    assert len(set(log.issues)) == MAX_ISSUES
