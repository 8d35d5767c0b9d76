"""The HTTP servers under a flood of half-sent and slow requests from one client.

The real ``email-service api`` and ``email-service worker`` processes run with a lowered
open-file limit (1,024), as many containers have. One client (127.0.0.2) opens 1,500
connections that send half a request head and then nothing, and a few that send a body one
byte a second. Meanwhile ``/health`` from another address (127.0.0.1) must keep answering
within a second, the flooding connections must be closed by the server's header timeout,
the slow bodies cut off (408), memory must stay bounded, and the log must hold no traceback
and no ERROR line.
"""

from __future__ import annotations

import functools
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from email_service.http.server import BODY_READ_TIMEOUT_S, HEADER_TIMEOUT_S, LINGERING_TIME_S
from tests.e2e.processes import JWT_SECRET, free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

#: The open-file limit the servers run with: small enough that the flood would exhaust it.
SERVER_FILE_LIMIT = 1024
#: Connections the flooding client opens (more than the server has descriptors for).
FLOOD = 1500
#: Seconds the flood may take to open (a server that stops accepting makes connects hang).
FLOOD_OPEN_S = 5
#: Clients that send a body one byte a second.
SLOW_BODIES = 5
#: ``/health`` must answer within this, all through the flood.
HEALTH_BOUND_S = 1.0
#: RSS the server may gain while flooded.
MEMORY_BOUND_KIB = 60 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_FILE_LIMIT, SERVER_FILE_LIMIT))


@dataclass
class Server:
    role: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def servers(environ: dict[str, str], tmp_path: Path) -> Iterator[list[Server]]:
    """``email-service api`` and ``email-service worker``, each with 1,024 descriptors."""
    started = []
    env = {**os.environ, **environ, "EMAIL_SERVICE_API_JWT_SECRET": JWT_SECRET}
    try:
        for role, port_flag in (("api", "--port"), ("worker", "--http-port")):
            port = free_port()
            log = tmp_path / f"{role}.log"
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "email_service", role, port_flag, str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=limit_files,  # noqa: PLW1509 - only setrlimit, before exec
                )
            started.append(Server(role, port, process, log))
        for server in started:
            wait_for(
                functools.partial(health_s, server.port), timeout_s=30, what=f"{server.role} up"
            )
        yield started
    finally:
        for server in started:
            server.process.terminate()
            try:
                server.process.wait(30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(10)


def health_s(port: int) -> float | None:
    """Seconds ``GET /health`` took from 127.0.0.1, or None when it failed."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = sock.recv(1024)
    except OSError:
        return None
    return time.monotonic() - started if answer.startswith(b"HTTP/1.1 200") else None


def half_open(port: int) -> socket.socket | None:
    """A connection from 127.0.0.2 that sends half a request head, then nothing."""
    sock = socket.socket()
    sock.settimeout(0.2)  # a server out of descriptors stops accepting: do not wait long
    try:
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    except OSError:
        sock.close()
        return None
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.settimeout(0.01)
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def slow_body(port: int, held_s: list[float]) -> None:
    """POST a body one byte a second; record how long the server kept listening."""
    started = time.monotonic()
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(1)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            b"POST /api/v1/providers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        for _ in range(60):
            try:
                sock.sendall(b" ")
                if sock.recv(4096) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
    held_s.append(time.monotonic() - started)


def flood(port: int) -> list[socket.socket]:
    """Up to ``FLOOD`` half-open connections, opened within ``FLOOD_OPEN_S``."""
    opened = []
    until = time.monotonic() + FLOOD_OPEN_S
    while len(opened) < FLOOD and time.monotonic() < until:
        sock = half_open(port)
        if sock is not None:
            opened.append(sock)
    return opened


def test_half_open_and_slow_requests_cannot_starve_health(servers: list[Server]) -> None:
    api = servers[0]
    memory_before = {s.role: rss_kib(s.process.pid) for s in servers}
    held_s: list[float] = []
    slow = [threading.Thread(target=slow_body, args=(api.port, held_s)) for _ in range(SLOW_BODIES)]
    for thread in slow:
        thread.start()
    flooding = {s.role: flood(s.port) for s in servers}
    try:
        flooded_at = time.monotonic()
        worst = dict.fromkeys(memory_before, 0.0)
        while time.monotonic() - flooded_at < HEADER_TIMEOUT_S + 3:
            for server in servers:
                took = health_s(server.port)
                assert took is not None, f"{server.role} /health failed while flooded"
                worst[server.role] = max(worst[server.role], took)
            time.sleep(0.1)
        assert max(worst.values()) < HEALTH_BOUND_S, worst
        for server in servers:
            grown = rss_kib(server.process.pid) - memory_before[server.role]
            assert grown < MEMORY_BOUND_KIB, (server.role, grown)
            left = [sock for sock in flooding[server.role] if not closed_by_server(sock)]
            assert not left, f"{server.role}: {len(left)} half-open connections still open"
    finally:
        for sock in (sock for socks in flooding.values() for sock in socks):
            sock.close()
        for thread in slow:
            thread.join(90)
    assert max(held_s) < BODY_READ_TIMEOUT_S + LINGERING_TIME_S + 3, held_s
    for server in servers:
        text = server.log.read_text(errors="replace")
        assert "Traceback" not in text and " ERROR " not in text, text[-3000:]
