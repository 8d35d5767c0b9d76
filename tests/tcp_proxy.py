"""A TCP proxy for fault injection in tests: forward, freeze, cut or refuse connections.

One selector thread relays every connection (no busy loop, hundreds of connections)::

    with TcpProxy.start("127.0.0.1", server_port) as proxy:
        connect the client to 127.0.0.1:proxy.port
        proxy.freeze_existing()   # current connections go silent; new ones still forward
        proxy.blackhole()         # current and new connections go silent
        proxy.cut()               # RST every current connection; new ones as the mode says
        proxy.refuse()            # RST every current connection and every new one at once
        proxy.forward()           # back to normal, frozen connections included

A *frozen* connection stays open at both ends, but every byte in either direction is read
and dropped, and a close or reset by one end is not passed on: to both ends it looks like a
network that went silent (a half-open connection). The proxy's own kernel still answers TCP
keepalive probes, so only application-level timeouts can find it. Bytes dropped while
frozen are lost for good: a connection resumed by ``forward()`` has a hole in its stream.

A *refused* connection is accepted and reset at once (what a client of a firewall's
``REJECT --reject-with tcp-reset`` or of a restarting server sees). ``cut`` and ``refuse``
send RST (``SO_LINGER`` 0), never FIN. Every method returns once the relay thread has
carried it out, so a test can act on the new state at once.
"""

from __future__ import annotations

import enum
import errno
import queue
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Any

#: Bytes read from one socket at a time.
CHUNK_BYTES = 65536
#: Bytes buffered per direction before the proxy stops reading the sender (backpressure).
BUFFER_LIMIT_BYTES = 256 * 1024
#: Pending connections the listening socket queues (the kernel caps it at somaxconn).
LISTEN_BACKLOG = 1024
#: How long a control call waits for the relay thread; it only fails if the thread is stuck.
CONTROL_TIMEOUT_S = 10.0
#: ``SO_LINGER`` on, timeout 0: ``close()`` sends RST instead of FIN.
RESET_LINGER = struct.pack("ii", 1, 0)
#: ``connect_ex`` results that mean "still connecting" on a non-blocking socket.
CONNECT_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN})


class Mode(enum.Enum):
    """What happens to connections accepted from now on."""

    FORWARD = "forward"
    BLACKHOLE = "blackhole"
    REFUSE = "refuse"


class _Side:
    """One socket of a relayed connection and the bytes waiting to be sent to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.outgoing = bytearray()
        self.eof = False  # its peer sent FIN: nothing more to read
        self.shut_write = False  # we sent FIN to it
        self.failed = False  # reset, or any other socket error
        self.closed = False
        self.registered = 0  # selector events currently registered


class _Relay:
    """A client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = _Side(client)
        self.upstream = _Side(upstream)
        self.connecting = True
        self.frozen = False

    def other(self, side: _Side) -> _Side:
        return self.upstream if side is self.client else self.client

    def sides(self) -> tuple[_Side, _Side]:
        return self.client, self.upstream


class TcpProxy:
    """A fault-injecting TCP proxy on 127.0.0.1; see the module docstring."""

    def __init__(self, target: tuple[Any, ...], family: socket.AddressFamily) -> None:
        self._target = target
        self._family = family
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=LISTEN_BACKLOG)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._commands: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._relays: set[_Relay] = set()
        self._mode = Mode.FORWARD
        self._running = True
        self._closed = False
        self._count_lock = threading.Lock()
        self._connections_total = 0
        self._connections_refused = 0
        self._thread = threading.Thread(
            target=self._run, name=f"tcp-proxy-{self.port}", daemon=True
        )

    # -- public API -----------------------------------------------------------------------

    @classmethod
    def start(cls, target_host: str, target_port: int) -> TcpProxy:
        """A running proxy to ``target_host:target_port`` (resolved once, here)."""
        family, _type, _proto, _name, address = socket.getaddrinfo(
            target_host, target_port, type=socket.SOCK_STREAM
        )[0]
        proxy = cls(address, family)
        proxy._thread.start()
        return proxy

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def connections_total(self) -> int:
        """Connections accepted since the start, refused ones included."""
        with self._count_lock:
            return self._connections_total

    @property
    def connections_refused(self) -> int:
        """Connections reset at once because ``refuse()`` was in effect."""
        with self._count_lock:
            return self._connections_refused

    @property
    def open_connections(self) -> int:
        """Connections relayed (or frozen) right now."""
        result: list[int] = []
        self._control(lambda: result.append(len(self._relays)))
        return result[0]

    def forward(self) -> None:
        """Relay every connection normally again, frozen ones included."""

        def apply() -> None:
            self._mode = Mode.FORWARD
            for relay in list(self._relays):
                relay.frozen = False
                self._settle(relay)

        self._control(apply)

    def blackhole(self) -> None:
        """Freeze every current connection, and every new one until ``forward()``."""

        def apply() -> None:
            self._mode = Mode.BLACKHOLE
            self._freeze_all()

        self._control(apply)

    def freeze_existing(self) -> None:
        """Freeze every current connection; new ones are handled as the mode says."""
        self._control(self._freeze_all)

    def cut(self) -> None:
        """Reset (RST) every current connection, both ends; new ones as the mode says."""
        self._control(self._reset_all)

    def refuse(self) -> None:
        """Reset every current connection, and every new one as soon as it is accepted."""

        def apply() -> None:
            self._mode = Mode.REFUSE
            self._reset_all()

        self._control(apply)

    def close(self) -> None:
        """Stop relaying and close every socket (connections are reset)."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():

            def stop() -> None:
                self._running = False

            self._control(stop)
            self._thread.join(CONTROL_TIMEOUT_S)
        else:
            self._close_everything()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- control: run a function on the relay thread and wait for it ------------------------

    def _control(self, action: Callable[[], None]) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("the proxy is not running")
        done = threading.Event()
        self._commands.put((action, done))
        with suppress(BlockingIOError):  # full: the thread is already due to wake up
            self._wake_w.send(b"x")
        if not done.wait(CONTROL_TIMEOUT_S):
            raise RuntimeError("the proxy's relay thread did not answer")

    # -- the relay thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._running:
                for key, events in self._selector.select():
                    match key.data:
                        case "accept":
                            self._accept()
                        case "wake":
                            self._run_commands()
                        case (relay, side):
                            self._on_ready(relay, side, events)
        finally:
            self._close_everything()
            while not self._commands.empty():  # release anyone still waiting
                self._commands.get_nowait()[1].set()

    def _run_commands(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while not self._commands.empty():
            action, done = self._commands.get_nowait()
            try:
                action()
            finally:
                done.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: try again on the next event
                return
            with self._count_lock:
                self._connections_total += 1
                if self._mode is Mode.REFUSE:
                    self._connections_refused += 1
            if self._mode is Mode.REFUSE:
                _reset(client)
                continue
            client.setblocking(False)
            upstream = socket.socket(self._family, socket.SOCK_STREAM)
            upstream.setblocking(False)
            relay = _Relay(client, upstream)
            relay.frozen = self._mode is Mode.BLACKHOLE
            self._relays.add(relay)
            error = upstream.connect_ex(self._target)
            if error == 0:
                relay.connecting = False
            elif error not in CONNECT_IN_PROGRESS:
                relay.connecting = False
                relay.upstream.failed = True
            self._settle(relay)

    def _on_ready(self, relay: _Relay, side: _Side, events: int) -> None:
        if relay not in self._relays or side.closed:
            return  # closed earlier in this same batch of events
        if side is relay.upstream and relay.connecting:
            relay.connecting = False
            if side.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                side.failed = True
        else:
            if events & selectors.EVENT_WRITE:
                self._send(relay, side)
            if events & selectors.EVENT_READ and not side.failed:
                self._receive(relay, side)
        self._settle(relay)

    def _receive(self, relay: _Relay, side: _Side) -> None:
        try:
            data = side.sock.recv(CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            side.failed = True
            return
        if not data:
            side.eof = True
        elif not relay.frozen:
            relay.other(side).outgoing += data

    def _send(self, relay: _Relay, side: _Side) -> None:
        if relay.frozen or not side.outgoing:
            return
        try:
            sent = side.sock.send(side.outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            side.failed = True
            return
        del side.outgoing[:sent]

    def _settle(self, relay: _Relay) -> None:
        """Pass on ends and failures (unless frozen), then register the events still needed."""
        for side in relay.sides():
            if side.failed and not side.closed:
                self._close_side(side, reset=True)
        if not relay.frozen:
            for side in relay.sides():
                other = relay.other(side)
                if side.failed:
                    self._drop(relay)  # a reset at one end resets the other
                    return
                if (
                    side.eof
                    and not other.outgoing
                    and not other.shut_write
                    and not (other is relay.upstream and relay.connecting)
                ):
                    other.shut_write = True
                    try:
                        other.sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        other.failed = True
                        self._drop(relay)
                        return
            if all(side.eof and side.shut_write for side in relay.sides()):
                self._drop(relay, reset=False)
                return
        for side in relay.sides():
            self._register(relay, side)

    def _register(self, relay: _Relay, side: _Side) -> None:
        if side.closed:
            return
        other = relay.other(side)
        wanted = 0
        if side is relay.upstream and relay.connecting:
            wanted = selectors.EVENT_WRITE
        else:
            can_buffer = relay.frozen or len(other.outgoing) < BUFFER_LIMIT_BYTES
            if not side.eof and can_buffer:
                wanted |= selectors.EVENT_READ
            if side.outgoing and not relay.frozen:
                wanted |= selectors.EVENT_WRITE
        if wanted == side.registered:
            return
        if side.registered == 0:
            self._selector.register(side.sock, wanted, (relay, side))
        elif wanted == 0:
            self._selector.unregister(side.sock)
        else:
            self._selector.modify(side.sock, wanted, (relay, side))
        side.registered = wanted

    def _freeze_all(self) -> None:
        for relay in list(self._relays):
            relay.frozen = True
            for side in relay.sides():
                side.outgoing.clear()
            self._settle(relay)

    def _reset_all(self) -> None:
        for relay in list(self._relays):
            self._drop(relay)

    def _drop(self, relay: _Relay, *, reset: bool = True) -> None:
        for side in relay.sides():
            self._close_side(side, reset=reset)
        self._relays.discard(relay)

    def _close_side(self, side: _Side, *, reset: bool) -> None:
        if side.closed:
            return
        side.closed = True
        if side.registered:
            self._selector.unregister(side.sock)
            side.registered = 0
        if reset:
            _reset(side.sock)
        else:
            side.sock.close()

    def _close_everything(self) -> None:
        if self._selector.get_map() is None:
            return  # already done
        for relay in list(self._relays):
            self._drop(relay)
        for sock in (self._listener, self._wake_r):
            with suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
        self._wake_w.close()
        self._selector.close()


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with RST rather than FIN."""
    with suppress(OSError):  # already broken: a plain close is all that is left
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
    sock.close()
