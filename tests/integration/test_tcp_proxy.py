"""The fault-injecting TCP proxy of ``tests/tcp_proxy.py``, against a local echo server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from tests.helpers import wait_for
from tests.tcp_proxy import TcpProxy

#: How long a connection must stay silent to count as frozen; short, it is waited in full.
SILENCE_S = 0.3
#: Bound on anything that should happen at once (a reply, a reset).
PROMPT_S = 5.0
#: Connections relayed at the same time in the load check.
MANY = 300


class EchoServer:
    """Echoes every byte back; records how each connection ended ("eof" or "reset")."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.endings: list[str] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._connections.add(connection)
                thread = threading.Thread(target=self._echo, args=(connection,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _echo(self, connection: socket.socket) -> None:
        ending = "eof"
        try:
            while data := connection.recv(65536):
                connection.sendall(data)
        except OSError:
            ending = "reset"
        with self._lock:
            self.endings.append(ending)
            self._connections.discard(connection)
        connection.close()

    def close(self) -> None:
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._accepting.join(PROMPT_S)
        for thread in self._threads:
            thread.join(PROMPT_S)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy.start("127.0.0.1", echo.port) as started:
        yield started


@contextmanager
def connect(proxy: TcpProxy) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=PROMPT_S)
    try:
        yield sock
    finally:
        sock.close()


def round_trip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def assert_silent(sock: socket.socket) -> None:
    """Nothing arrives for SILENCE_S: no byte, no end of file, no reset."""
    sock.settimeout(SILENCE_S)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(PROMPT_S)


def assert_reset(sock: socket.socket) -> None:
    with pytest.raises(ConnectionResetError):
        sock.sendall(b"x")
        sock.recv(1)


def test_forward_relays_both_ways_and_passes_half_close(proxy: TcpProxy) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB: more than the proxy buffers per direction
    with connect(proxy) as sock:
        assert round_trip(sock, payload) == payload
        sock.sendall(b"last")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(16) == b"last"
        assert sock.recv(16) == b""  # the server's FIN came through
    assert proxy.connections_total == 1
    wait_for(lambda: proxy.open_connections == 0, timeout_s=PROMPT_S, what="relay closed")


def test_blackhole_freezes_current_and_new_connections_without_fin_or_rst(
    proxy: TcpProxy, echo: EchoServer
) -> None:
    with connect(proxy) as before:
        assert round_trip(before, b"hello") == b"hello"
        proxy.blackhole()
        before.sendall(b"lost")
        assert_silent(before)
        with connect(proxy) as during:
            during.sendall(b"lost too")
            assert_silent(during)
        # the client's close is not passed on either: the server sees no end
        assert_silent(before)
        assert echo.endings == []
        proxy.forward()
        with connect(proxy) as after:
            assert round_trip(after, b"back") == b"back"
    assert proxy.connections_total == 3


def test_freeze_existing_lets_new_connections_through(proxy: TcpProxy) -> None:
    with connect(proxy) as frozen, connect(proxy) as frozen_too:
        assert round_trip(frozen, b"a") == b"a"
        assert round_trip(frozen_too, b"b") == b"b"
        proxy.freeze_existing()
        frozen.sendall(b"lost")
        with connect(proxy) as fresh:
            assert round_trip(fresh, b"fresh") == b"fresh"
        assert_silent(frozen)
        proxy.forward()  # resumes the frozen ones; what was sent meanwhile is gone
        assert round_trip(frozen_too, b"again") == b"again"


def test_cut_resets_current_connections_and_accepts_new_ones(
    proxy: TcpProxy, echo: EchoServer
) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock, b"x") == b"x"
        proxy.cut()
        assert_reset(sock)
    wait_for(lambda: echo.endings == ["reset"], timeout_s=PROMPT_S, what="server side reset")
    with connect(proxy) as sock:
        assert round_trip(sock, b"y") == b"y"


def test_refuse_resets_new_connections_until_forward(proxy: TcpProxy) -> None:
    with connect(proxy) as existing:
        assert round_trip(existing, b"x") == b"x"
        proxy.refuse()
        assert_reset(existing)
    for _ in range(3):
        with pytest.raises(ConnectionResetError), connect(proxy) as refused:
            # the reset can arrive before connect() has even returned
            refused.sendall(b"x")
            refused.recv(1)
    assert proxy.connections_refused == 3
    proxy.forward()
    with connect(proxy) as sock:
        assert round_trip(sock, b"back") == b"back"
    assert proxy.connections_total == 5


def test_a_target_that_refuses_resets_the_client() -> None:
    with socket.socket() as bound_not_listening:  # held, so the proxy cannot get its port
        bound_not_listening.bind(("127.0.0.1", 0))
        closed_port = bound_not_listening.getsockname()[1]
        with TcpProxy.start("127.0.0.1", closed_port) as proxy:
            with pytest.raises(ConnectionResetError), connect(proxy) as sock:
                sock.sendall(b"x")
                sock.recv(1)
            assert proxy.open_connections == 0


def test_hundreds_of_connections_at_once(proxy: TcpProxy) -> None:
    sockets = [
        socket.create_connection(("127.0.0.1", proxy.port), timeout=PROMPT_S) for _ in range(MANY)
    ]
    try:
        for n, sock in enumerate(sockets):
            sock.sendall(f"{n:05d}".encode())
        for n, sock in enumerate(sockets):
            assert sock.recv(5) == f"{n:05d}".encode()
        assert proxy.open_connections == MANY
        proxy.cut()
        for sock in sockets[:10]:
            assert_reset(sock)
    finally:
        for sock in sockets:
            sock.close()
    assert proxy.connections_total == MANY


def test_close_resets_every_connection(echo: EchoServer) -> None:
    proxy = TcpProxy.start("127.0.0.1", echo.port)
    with connect(proxy) as sock:
        assert round_trip(sock, b"x") == b"x"
        proxy.blackhole()
        proxy.close()
        assert_reset(sock)
    proxy.close()  # twice is fine
    with pytest.raises(OSError), connect(proxy):
        pass
