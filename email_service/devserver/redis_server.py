"""A throwaway redis-server for the demo, installed from Debian's packages if missing (shell)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from email_service.devserver.errors import DevServerError
from email_service.devserver.process import pick_free_ports

#: Seconds to wait for redis-server to answer PING.
STARTUP_TIMEOUT_S = 10.0


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def ensure_redis_installed() -> Path:
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DevServerError(
            "redis-server is not installed: install it (`sudo apt-get install redis-server`) "
            "or set REDIS_URL to a running Redis"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        result = subprocess.run(args, env=env, capture_output=True, check=False, timeout=900)
        if result.returncode != 0:
            raise DevServerError(f"{' '.join(args)} failed: {result.stderr.decode()[-500:]}")
    found = shutil.which("redis-server")
    if not found:
        raise DevServerError("redis-server is still missing after apt-get install")
    return Path(found)


def start_redis(workdir: Path) -> RedisServer:
    """Start redis-server on a free loopback port, keeping nothing on disk."""
    binary = ensure_redis_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    (port,) = pick_free_ports("127.0.0.1", 1)
    log = (workdir / "redis.log").open("ab")
    process = subprocess.Popen(
        [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    server = RedisServer(port, process, workdir)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = (workdir / "redis.log").read_text(errors="replace")[-1000:]
            raise DevServerError(f"redis-server did not start on port {port}:\n{tail}")
        time.sleep(0.05)
