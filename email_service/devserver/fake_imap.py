"""A scriptable fake IMAP server for protocol behaviour Dovecot will not produce.

Only for those: everything else is tested against Dovecot. It speaks just enough IMAP4rev1
for ``ImapSession`` (CAPABILITY, LOGIN, EXAMINE, NOOP, IDLE/DONE, LOGOUT); ``replies`` maps
a command name to the exact bytes to send, so a test can bundle untagged responses the way
a real server might.

- ``fake_imap_server(replies)``: the port of a server for one client session.
- ``FakeImapServer.start(replies, drop_after="LOGIN")``: any number of connections, one
  thread each; with ``drop_after`` it closes every session right after its reply to that
  command (a server that accepts the login, then drops the connection), and it records
  the time of every LOGIN it receives (``login_times()``).
- ``replies={"LIST": many_folders(2_000_000)}``: a LIST answer of that many folders,
  streamed in chunks (a reply may be an iterable of byte chunks), for listing limits.
- ``FakeImapServer.start(folders={...}, capabilities=(...))``: a mailbox shared by all
  connections, for Gmail's label folders (Dovecot has no X-GM-EXT-1): EXAMINE/SELECT,
  ``UID SEARCH ALL`` and ``UID SEARCH UID n:*``, and ``UID FETCH`` of RFC822.SIZE,
  INTERNALDATE, FLAGS, X-GM-MSGID and BODY[] (what the listener asks for small messages).
  ``add_message`` delivers during a test and wakes the IDLE-ing sessions of that folder;
  ``add_message(..., announce=False)`` delivers without a word to any session, then or
  later. A session that was busy when a message came is told at its next IDLE, as real
  servers do.
- ``recreate_folder(name, uid_validity)``: the folder deleted and created again, the way
  Courier-IMAP does it under a session: sessions that had it selected stay on the new,
  empty folder and are told nothing (no EXPUNGE, no BYE); the next delivery announces
  ``* 1 EXISTS``, and only a new EXAMINE shows the new UIDVALIDITY.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO

Reply = Callable[[bytes], bytes | Iterable[bytes]]  # tag -> bytes to send (or chunks of it)

DEFAULT_REPLIES: dict[str, Reply] = {
    "CAPABILITY": lambda tag: b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n",
    "LOGIN": lambda tag: tag + b" OK logged in\r\n",
    "EXAMINE": lambda tag: (
        b"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 4] ok\r\n"
        + tag
        + b" OK [READ-ONLY] done\r\n"
    ),
    "NOOP": lambda tag: tag + b" OK done\r\n",
    "IDLE": lambda tag: b"+ idling\r\n",
    "DONE": lambda tag: tag + b" OK idle done\r\n",
    "LOGOUT": lambda tag: b"* BYE bye\r\n" + tag + b" OK done\r\n",
}

#: A synchronising (``{5}``) or non-synchronising (``{5+}``) literal at the end of a line.
LITERAL = re.compile(rb"\{(\d+)(\+?)\}$")
#: How long ``close()`` waits for each connection thread; they end as soon as shut down.
JOIN_TIMEOUT_S = 5.0
#: A UID range of ``UID SEARCH UID n:*``.
UID_RANGE = re.compile(rb"UID (\d+):\*", re.IGNORECASE)


@dataclass
class FakeMessage:
    uid: int
    raw: bytes
    gmail_msgid: int | None = None
    internal_date: str = "02-Jan-2024 10:00:00 +0000"


@dataclass
class FakeFolder:
    uid_validity: int
    messages: list[FakeMessage] = field(default_factory=list)

    @property
    def uid_next(self) -> int:
        return max((m.uid for m in self.messages), default=0) + 1


def _in_uid_set(uid: int, text: bytes) -> bool:
    """Whether ``uid`` is in an IMAP sequence set such as ``1,3:5,7:*``."""
    for item in text.split(b","):
        low, _, high = item.partition(b":")
        if int(low) <= uid and (high == b"*" or uid <= int(high or low)):
            return True
    return False


def _unknown(tag: bytes) -> bytes:
    return tag + b" BAD unknown command\r\n"


class FakeImapServer:
    """Serves any number of IMAP connections on a free loopback port, one thread each."""

    def __init__(
        self,
        replies: dict[str, Reply],
        drop_after: str | None,
        folders: dict[str, FakeFolder] | None = None,
        capabilities: Sequence[str] = ("IMAP4rev1", "IDLE"),
    ) -> None:
        self._table = {**DEFAULT_REPLIES, **replies}
        if folders is not None:
            words = " ".join(capabilities).encode()
            self._table["CAPABILITY"] = lambda tag: (
                b"* CAPABILITY " + words + b"\r\n" + tag + b" OK done\r\n"
            )
        self.folders = folders
        #: Sessions in IDLE: connection -> selected folder, woken by ``add_message``.
        self._idling: dict[socket.socket, str] = {}
        #: The message count each session was last told (EXAMINE, EXISTS).
        self._told: dict[socket.socket, int] = {}
        self._drop_after = drop_after.upper() if drop_after else None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._logins: list[float] = []
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._acceptor = threading.Thread(
            target=self._accept, name=f"fake-imap-{self.port}", daemon=True
        )

    @classmethod
    def start(
        cls,
        replies: dict[str, Reply] | None = None,
        *,
        drop_after: str | None = None,
        folders: dict[str, FakeFolder] | None = None,
        capabilities: Sequence[str] = ("IMAP4rev1", "IDLE"),
    ) -> FakeImapServer:
        """A running server; ``drop_after`` names the command after whose reply it hangs up."""
        server = cls(replies or {}, drop_after, folders, capabilities)
        server._acceptor.start()
        return server

    def add_message(self, folder: str, message: FakeMessage, *, announce: bool = True) -> None:
        """Deliver ``message`` to ``folder`` and announce it to the sessions IDLE-ing there."""
        assert self.folders is not None, "start the server with folders=..."
        with self._lock:
            messages = self.folders[folder].messages
            messages.append(message)
            waiting = [conn for conn, name in self._idling.items() if name == folder]
            count = len(messages)
            if not announce:  # and never: as if the sessions had been told
                self._told.update(dict.fromkeys(self._told, count))
                waiting = []
        for connection in waiting:
            self._told[connection] = count
            with suppress(OSError):
                connection.sendall(b"* %d EXISTS\r\n" % count)

    def recreate_folder(self, folder: str, uid_validity: int) -> None:
        """Replace ``folder`` by an empty one with ``uid_validity``; sessions are not told."""
        assert self.folders is not None, "start the server with folders=..."
        with self._lock:
            self.folders[folder] = FakeFolder(uid_validity)

    def login_times(self) -> list[float]:
        """``time.monotonic()`` of every LOGIN received so far, in order."""
        with self._lock:
            return list(self._logins)

    def close(self) -> None:
        """Stop accepting, hang up every open session, and wait for the threads."""
        with self._lock:
            self._closing = True
            connections = list(self._connections)
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._listener.close()
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(JOIN_TIMEOUT_S)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)

    def __enter__(self) -> FakeImapServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closing:
                    connection.close()
                    return
                self._connections.add(connection)
                thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection, connection.makefile("rb") as reader:
                self._converse(connection, reader)
        except OSError:
            pass  # the client went away, or close() shut the connection down
        finally:
            with self._lock:
                self._connections.discard(connection)

    def _converse(self, connection: socket.socket, reader: BinaryIO) -> None:
        connection.sendall(b"* OK fake ready\r\n")
        idle_tag = b""
        selected: str | None = None
        while line := self._read_command(connection, reader):
            words = line.strip().split(b" ")
            if words == [b"DONE"]:
                with self._lock:
                    self._idling.pop(connection, None)
                _send(connection, self._table["DONE"](idle_tag))
                continue
            if len(words) < 2:
                connection.sendall(b"* BAD no command\r\n")
                continue
            tag, command = words[0], words[1].upper().decode("ascii", "replace")
            if command == "LOGIN":
                with self._lock:
                    self._logins.append(time.monotonic())
            if command == "IDLE":
                idle_tag = tag
                if selected is not None:
                    with self._lock:
                        self._idling[connection] = selected
            if self.folders is not None and command in ("EXAMINE", "SELECT", "UID"):
                reply, selected = self._mailbox_reply(tag, command, words[2:], selected)
                if command != "UID" and selected is not None:
                    with self._lock:
                        self._told[connection] = len(self.folders[selected].messages)
                connection.sendall(reply)
                continue
            _send(connection, self._table.get(command, _unknown)(tag))
            if command in ("LOGOUT", self._drop_after):
                return
            if command == "IDLE" and self.folders is not None and selected is not None:
                self._tell_count(connection, selected)

    def _tell_count(self, connection: socket.socket, folder: str) -> None:
        """At IDLE, as real servers do: EXISTS for a count the session was not told yet
        (mail added while it was busy), unless the folder is empty."""
        with self._lock:
            assert self.folders is not None
            count = len(self.folders[folder].messages)
            if not count or self._told.get(connection) == count:
                return
            self._told[connection] = count
        connection.sendall(b"* %d EXISTS\r\n" % count)

    def _mailbox_reply(
        self, tag: bytes, command: str, args: list[bytes], selected: str | None
    ) -> tuple[bytes, str | None]:
        assert self.folders is not None
        if command in ("EXAMINE", "SELECT"):
            name = b" ".join(args).strip(b'"').decode()
            with self._lock:
                folder = self.folders.get(name)
                if folder is None:
                    return tag + b" NO [NONEXISTENT] no such mailbox\r\n", None
                head = b"* %d EXISTS\r\n* OK [UIDVALIDITY %d] ok\r\n* OK [UIDNEXT %d] ok\r\n" % (
                    len(folder.messages),
                    folder.uid_validity,
                    folder.uid_next,
                )
            return head + tag + b" OK [READ-ONLY] done\r\n", name
        if selected is None or not args:
            return tag + b" BAD no mailbox selected\r\n", selected
        with self._lock:
            messages = list(self.folders[selected].messages)
        rest = b" ".join(args[1:])
        if args[0].upper() == b"SEARCH":
            match = UID_RANGE.search(rest)
            low = int(match.group(1)) if match else 1
            found = [m.uid for m in messages if m.uid >= low] or [m.uid for m in messages][-1:]
            listed = b" ".join(b"%d" % uid for uid in found)
            return b"* SEARCH " + listed + b"\r\n" + tag + b" OK search done\r\n", selected
        if args[0].upper() == b"FETCH" and len(args) > 1:
            out = b""
            for seq, message in enumerate(messages, start=1):
                if _in_uid_set(message.uid, args[1]):
                    out += b"* %d FETCH (" % seq + self._items(message, rest.upper()) + b")\r\n"
            return out + tag + b" OK fetch done\r\n", selected
        return tag + b" BAD unsupported\r\n", selected

    @staticmethod
    def _items(message: FakeMessage, asked: bytes) -> bytes:
        items = [b"UID %d" % message.uid]
        if b"RFC822.SIZE" in asked:
            items.append(b"RFC822.SIZE %d" % len(message.raw))
        if b"X-GM-MSGID" in asked and message.gmail_msgid is not None:
            items.append(b"X-GM-MSGID %d" % message.gmail_msgid)
        if b"INTERNALDATE" in asked:
            items.append(b'INTERNALDATE "' + message.internal_date.encode() + b'"')
        if b"FLAGS" in asked:
            items.append(b"FLAGS ()")
        if b"BODY.PEEK[]" in asked:
            items.append(b"BODY[] {%d}\r\n" % len(message.raw) + message.raw)
        return b" ".join(items)

    @staticmethod
    def _read_command(connection: socket.socket, reader: BinaryIO) -> bytes:
        """One command line, its literals (``LOGIN {4}``) inlined; b"" at end of file."""
        parts: list[bytes] = []
        line = reader.readline()
        if not line:
            return b""
        line = line.rstrip(b"\r\n")
        while match := LITERAL.search(line):
            if not match.group(2):
                connection.sendall(b"+ go ahead\r\n")
            parts += [line[: match.start()], reader.read(int(match.group(1)))]
            line = reader.readline().rstrip(b"\r\n")
        return b"".join([*parts, line]) or b" "


#: LIST lines sent per chunk by ``many_folders``.
LIST_CHUNK_LINES = 2000


def _send(connection: socket.socket, reply: bytes | Iterable[bytes]) -> None:
    for chunk in [reply] if isinstance(reply, bytes) else reply:
        connection.sendall(chunk)


def many_folders(count: int) -> Reply:
    """A LIST reply naming ``count`` folders, generated while it is sent (never held whole)."""

    def reply(tag: bytes) -> Iterator[bytes]:
        yield b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
        for start in range(1, count, LIST_CHUNK_LINES):
            stop = min(start + LIST_CHUNK_LINES, count)
            yield b"".join(
                b'* LIST (\\HasNoChildren) "/" "Archive/%07d"\r\n' % n for n in range(start, stop)
            )
        yield tag + b" OK LIST done\r\n"

    return reply


@contextmanager
def fake_imap_server(replies: dict[str, Reply]) -> Iterator[int]:
    """Serve a client session on a free loopback port; yields the port."""
    with FakeImapServer.start(replies) as server:
        yield server.port
