"""Reads a session's responses in IDLE as they come, without blocking (shell: a socket).

imapclient's ``idle_check`` polls only the socket, so a response already in imaplib's read
buffer or in the TLS layer (an EXISTS sent together with the ``+ idling`` continuation)
would wait for the next packet; and it returns nothing, instead of failing, at end of file.
``IdleStream`` reads through imaplib's own buffered file instead, a line at a time, and
says when the server hung up. ``imap_session`` owns the connection and hands it the file
and socket; this module imports no IMAP library.
"""

from __future__ import annotations

import io
import select
import socket
import ssl

from email_service.errors import ConnectionLost

#: Bytes read at a time while draining IDLE responses.
READ_CHUNK_BYTES = 65536


class IdleStream:
    """The complete lines a session in IDLE has received, read without blocking."""

    def __init__(self, reader: io.BufferedIOBase, sock: socket.socket) -> None:
        self._reader = reader
        self._sock = sock
        self._partial = b""

    def read_lines(self) -> tuple[list[bytes], bool]:
        """Every complete line readable now (CRLF stripped), and whether the peer closed
        the connection after them. A line cut by the packet boundary waits for its end."""
        received, closed = self._read_available()
        *lines, self._partial = (self._partial + received).split(b"\r\n")
        return lines, closed

    def wait_readable(self, timeout_s: float) -> None:
        """Return when there is something to read (or a hang-up), or after ``timeout_s``."""
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        poller.poll(timeout_s * 1000)

    def _read_available(self) -> tuple[bytes, bool]:
        sock = self._sock
        timeout = sock.gettimeout()
        sock.setblocking(False)
        received = bytearray()
        closed = False
        try:
            while True:
                try:
                    data = self._reader.read1(READ_CHUNK_BYTES)
                except (BlockingIOError, ssl.SSLWantReadError):
                    break
                except OSError as exc:
                    raise ConnectionLost(f"IDLE: connection lost ({exc})") from exc
                if data:
                    received += data
                    continue
                closed = isinstance(sock, ssl.SSLSocket) or _closed_by_peer(sock)
                break
        finally:
            sock.settimeout(timeout)
        return bytes(received), closed


def _closed_by_peer(sock: socket.socket) -> bool:
    """On a plain non-blocking socket, tell end of file from "nothing yet"."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
