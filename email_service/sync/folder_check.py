"""Whether the folder a session is on is still the one the cursor belongs to (core).

UIDVALIDITY is checked when a folder is opened, but a folder can be deleted and created
again while a session watches it, and servers say so in different ways:

- Dovecot ends the session (``* BYE IMAP session state is inconsistent, please relogin.``),
  or, on the maildirs of the test server, says ``* NO Internal error occurred. …`` in IDLE
  and goes on answering searches with the old folder's UIDs.
- Cyrus sends one ``* 1 EXPUNGE`` per old message and nothing else: the session stays on
  the dead folder (searches find nothing, new mail raises no EXISTS); only STATUS or a new
  EXAMINE shows the new UIDVALIDITY.
- Courier keeps the session on the new folder and announces ``* 1 EXISTS``, never
  mentioning the new UIDVALIDITY: new UIDs, old cursor.

So the untagged responses are read for what they imply (``read_signals``), and a UID
search is checked against the cursor (``check_search``). Anything that does not fit asks
for a *verification*: EXAMINE again and compare UIDVALIDITY and UIDNEXT with the cursor
(``sync.plan.plan_sync``). The listener also verifies at every reconciliation (each IDLE
re-issue, each poll), which bounds the time to notice a change no response revealed. A
verification costs one EXAMINE, so the rules lean towards asking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: EXPUNGEs in one batch of responses that make the folder worth verifying even when some
#: messages are left: a folder deleted under the session shows one per message (Cyrus),
#: and a person deleting this many at once costs only an EXAMINE.
EXPUNGE_STORM = 10

#: ``* <n> <keyword>`` or ``* <keyword> [<code>] <text>``.
_NUMBERED = re.compile(rb"^\* (\d+) ([A-Za-z]+)\b")
_STATUS = re.compile(rb"^\* ([A-Za-z]+)(?: \[([^\]]*)\])?(?: (.*))?$")


@dataclass(frozen=True)
class Untagged:
    """One untagged server response: ``* 3 EXISTS``, ``* OK [CLOSED] text``, ``* BYE text``."""

    keyword: str  #: upper case: EXISTS, EXPUNGE, RECENT, FETCH, OK, BYE, …
    number: int | None = None
    code: str | None = None  #: the response code in brackets, upper case, e.g. ``CLOSED``
    text: str = ""


def parse_untagged(line: bytes) -> Untagged | None:
    """The untagged response on ``line`` (CRLF already stripped), or None for any other line
    (a continuation, a tagged answer, a literal's content)."""
    numbered = _NUMBERED.match(line)
    if numbered:
        return Untagged(numbered.group(2).decode().upper(), int(numbered.group(1)))
    status = _STATUS.match(line)
    if status is None:
        return None
    code = status.group(2)
    return Untagged(
        keyword=status.group(1).decode().upper(),
        code=code.decode("ascii", "replace").upper() if code is not None else None,
        text=(status.group(3) or b"").decode("utf-8", "replace"),
    )


@dataclass(frozen=True)
class Signals:
    """What a batch of untagged responses means for the listener."""

    new_mail: bool = False
    #: Why the folder must be verified (EXAMINE again) before anything else; None if not.
    verify: str | None = None
    #: The server's text when it said ``* BYE``.
    goodbye: str | None = None


def combine_signals(first: Signals, then: Signals) -> Signals:
    """Both batches' signals: new mail if either had it, the first reason to verify."""
    return Signals(
        new_mail=first.new_mail or then.new_mail,
        verify=first.verify or then.verify,
        goodbye=first.goodbye or then.goodbye,
    )


def read_signals(responses: Iterable[Untagged], exists: int | None) -> tuple[Signals, int | None]:
    """What ``responses`` (in the order received) imply, and the message count after them.

    ``exists`` is the count the session knew (EXAMINE, then EXISTS and EXPUNGE), or None.
    Every EXISTS counts as new mail (a missed one would wait for the next reconciliation),
    except one below the known count: counts fall only through EXPUNGE, so that is a
    different folder under the same name. An untagged NO or BAD (a warning nobody asked
    for, such as Dovecot's on a deleted folder) asks for a verification too.
    """
    reading = _Reading(exists)
    for response in responses:
        reading.take(response)
    return reading.signals(), reading.exists


@dataclass
class _Reading:
    """``read_signals``'s state while it goes through one batch of responses."""

    exists: int | None
    new_mail: bool = False
    verify: str | None = None
    goodbye: str | None = None
    expunged: int = 0
    emptied: bool = False

    def take(self, response: Untagged) -> None:
        match response.keyword:
            case "EXISTS" if response.number is not None:
                if self.exists is not None and response.number < self.exists:
                    self._ask(
                        f"EXISTS {response.number} is below the {self.exists} messages known, "
                        "without an EXPUNGE"
                    )
                else:
                    self.new_mail = True
                self.exists = response.number
            case "RECENT" if response.number:
                self.new_mail = True
            case "EXPUNGE":
                self.expunged += 1
                if self.exists is not None:
                    self.exists = max(self.exists - 1, 0)
                    self.emptied = self.emptied or self.exists == 0
            case "OK" | "NO" if response.code == "CLOSED":
                self._ask("the server closed the folder ([CLOSED])")
            case "NO" | "BAD":  # a warning about the session's folder, seen unasked
                self._ask(f"the server said {response.keyword}: {response.text[:200]}")
            case "BYE":
                self.goodbye = response.text or "(no text)"
            case _:
                pass

    def _ask(self, reason: str) -> None:
        self.verify = self.verify or reason

    def signals(self) -> Signals:
        if self.emptied:
            self._ask(f"every message of the folder was expunged ({self.expunged} EXPUNGE)")
        elif self.expunged >= EXPUNGE_STORM:
            self._ask(f"{self.expunged} messages expunged at once")
        return Signals(new_mail=self.new_mail, verify=self.verify, goodbye=self.goodbye)


def check_search(found: Sequence[int], last_uid: int, announced_new: int) -> str | None:
    """Why the answer to ``UID SEARCH UID <last_uid + 1>:*`` does not fit the cursor, or None.

    ``UID n:*`` always returns the folder's highest UID, so a UID below the cursor means the
    newest message the cursor passed is gone: deleted, or a different folder. And when
    EXISTS announced ``announced_new`` messages since the last search, fewer UIDs above the
    cursor means the new ones have UIDs at or below it (Courier's recreated folder).
    """
    below = [uid for uid in found if uid < last_uid]
    if below:
        return f"UID SEARCH found uid {max(below)}, below the cursor's uid {last_uid}"
    above = sum(1 for uid in found if uid > last_uid)
    if above < announced_new:
        return (
            f"EXISTS announced {announced_new} new messages but UID SEARCH found {above} "
            f"above the cursor's uid {last_uid}"
        )
    return None
