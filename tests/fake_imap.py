"""A scriptable fake IMAP server for protocol quirks Dovecot will not produce.

Only for those: everything else is tested against Dovecot. It speaks just enough IMAP4rev1
for ``ImapSession`` (CAPABILITY, LOGIN, EXAMINE, NOOP, IDLE/DONE, LOGOUT); ``replies`` maps
a command name to the exact bytes to send, so a test can bundle untagged responses the way
a real server might.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Reply = Callable[[bytes], bytes]  # tag -> bytes to send

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


@contextmanager
def fake_imap_server(replies: dict[str, Reply]) -> Iterator[int]:
    """Serve one connection on a free loopback port; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    table = {**DEFAULT_REPLIES, **replies}
    done = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"* OK fake ready\r\n")
            reader = connection.makefile("rb")
            idle_tag = b""
            for line in reader:
                words = line.strip().split(b" ")
                if words == [b"DONE"]:
                    connection.sendall(table["DONE"](idle_tag))
                    continue
                tag, command = words[0], words[1].upper().decode()
                if command == "IDLE":
                    idle_tag = tag
                connection.sendall(table.get(command, lambda t: t + b" BAD unknown\r\n")(tag))
                if command == "LOGOUT":
                    break
        done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(5)
