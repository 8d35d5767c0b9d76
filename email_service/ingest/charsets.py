"""Core (pure): octets to text under a declared charset, noting where the label did not hold.

Mail declares charsets that are wrong (UTF-8 labelled ISO-8859-1), unknown to Python
("x-user-defined", typos), or absent (raw 8-bit headers). Every decode here is best effort and
never fails: it tries the declared charset (read as the superset senders really use), then
UTF-8, then windows-1252, and finally windows-1252 with U+FFFD for the five octets it lacks.
When the result is not what the label promised, ``CharsetLog`` records a ``CharsetIssue``,
which the event carries as ``charsetIssues`` so a consumer can tell a guess from a fact.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass, field

#: Last resort for octets that are neither UTF-8 nor in the declared charset: windows-1252 is
#: what unlabelled 8-bit mail nearly always is, and it maps all but five octets.
FALLBACK_CHARSET = "cp1252"

#: Declared charsets read as the superset senders really use (as the WHATWG Encoding Standard
#: does): "iso-8859-1" mail carries windows-1252 quotes and euro signs, gb2312 mail GBK
#: characters, shift_jis and euc-kr mail Microsoft's extensions. 8-bit octets under an ASCII
#: label are most often UTF-8 (flagged, as the label is wrong). Keys are Python's codec names.
_CHARSET_SUPERSETS = {
    "ascii": "utf-8",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}

#: Most issues one message records; a message with thousands of mislabelled parts is
#: described by its first ones.
MAX_ISSUES = 20

#: ``CharsetIssue.issue`` values.
UNKNOWN_CHARSET = "unknown_charset"  #: the label names no charset we know
WRONG_CHARSET = "wrong_charset"  #: the octets are not valid in the declared charset
GUESSED_CHARSET = "guessed_charset"  #: no label, and the octets are not UTF-8


@dataclass(frozen=True, slots=True)
class CharsetIssue:
    """Text that was not decoded as declared.

    ``part`` is "headers" or the MIME part number ("1", "1.2"); ``declared`` the label as
    written ("" when there was none); ``decoded_as`` the codec that was used; ``lossy`` is true
    when no charset took every octet and some became U+FFFD.
    """

    part: str
    declared: str
    decoded_as: str
    issue: str
    lossy: bool = False


@dataclass
class CharsetLog:
    """Collects the issues of one message, each once, at most ``MAX_ISSUES``."""

    issues: list[CharsetIssue] = field(default_factory=list)

    def add(self, issue: CharsetIssue) -> None:
        if issue not in self.issues and len(self.issues) < MAX_ISSUES:
            self.issues.append(issue)


def canonical(label: str) -> str | None:
    """Python's name for a charset label ("latin1" -> "iso8859-1"), None when unknown."""
    try:
        return codecs.lookup(label.strip().strip('"').lower().partition("*")[0]).name
    except (LookupError, ValueError):
        return None


def superset(label: str) -> str:
    """The codec to read a declared label with; the label itself when unknown."""
    name = canonical(label)
    if name is None:
        return label
    return _CHARSET_SUPERSETS.get(name, name)


def decode_octets(
    data: bytes,
    declared: str | None,
    *,
    part: str,
    log: CharsetLog,
    hint: str | None = None,
    final: bool = True,
) -> str:
    """Text of ``data`` labelled ``declared`` (None: no label), recording any issue in ``log``.

    Unlabelled octets are tried as UTF-8, then as ``hint`` (for raw 8-bit headers: the
    message's body charset), then windows-1252. ``final=False`` is for a prefix of a longer
    body (a partial fetch): an incomplete multi-byte sequence at its end is dropped instead of
    turning the decode into a guess.
    """
    label = (declared or "").strip().strip('"')
    name = canonical(label) if label else None
    promised = list(dict.fromkeys([_CHARSET_SUPERSETS.get(name, name), name])) if name else []
    guesses = ["utf-8", *([superset(hint)] if hint and not label else []), FALLBACK_CHARSET]
    for charset in (*promised, *guesses):
        text = _try_decode(data, charset, final=final)
        if text is None:
            continue
        if label and name is None:
            log.add(CharsetIssue(part, label, charset, UNKNOWN_CHARSET))
        elif label and (charset not in promised or (name == "ascii" and not text.isascii())):
            log.add(CharsetIssue(part, label, charset, WRONG_CHARSET))
        elif not label and charset != "utf-8":
            log.add(CharsetIssue(part, "", charset, GUESSED_CHARSET))
        return text
    issue = WRONG_CHARSET if name else UNKNOWN_CHARSET if label else GUESSED_CHARSET
    log.add(CharsetIssue(part, label, FALLBACK_CHARSET, issue, lossy=True))
    return data.decode(FALLBACK_CHARSET, "replace")


def decode_first(data: bytes, charsets: Iterable[str]) -> str | None:
    """Text in the first of ``charsets`` that takes every octet, None when none does."""
    for charset in charsets:
        text = _try_decode(data, charset, final=True)
        if text is not None:
            return text
    return None


def _try_decode(data: bytes, charset: str, *, final: bool) -> str | None:
    try:
        if final:
            text = data.decode(charset)
        else:
            text = codecs.getincrementaldecoder(charset)().decode(data, final=False)
        # A few codecs yield lone surrogates; those are not text and break UTF-8 output.
        text.encode("utf-8")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return None
    return text
