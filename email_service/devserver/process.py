"""Process, port and log helpers for the throwaway Dovecot (shell: /proc, sockets, files)."""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from email_service.devserver.errors import DevServerError

logger = logging.getLogger(__name__)

#: Upper bound for the file-descriptor limit when the hard limit is "unlimited" (the kernel's
#: default ``fs.nr_open``; a higher soft limit would be refused).
MAX_NOFILE = 1 << 20

#: Per-user inotify instances; every IDLE-ing imap process of the mail user takes one.
INOTIFY_INSTANCES_PATH = Path("/proc/sys/fs/inotify/max_user_instances")

#: A greeting longer than this is not Dovecot's; stop reading.
MAX_GREETING_BYTES = 4096


def output_of(result: subprocess.CompletedProcess[bytes]) -> str:
    """A command's stderr, or its stdout when stderr is empty, as text."""
    return (result.stderr or result.stdout).decode(errors="replace").strip()


def tail_lines(path: Path, lines: int, *, offset: int = 0) -> str:
    """The last ``lines`` lines of ``path`` after byte ``offset``; empty if unreadable."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def file_size(path: Path) -> int:
    """Size of ``path`` in bytes, 0 when it does not exist yet."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def session_members(session_id: int) -> Iterator[int]:
    """Pids of the live (non-zombie) processes in session ``session_id``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The fields after the parenthesised command name: state ppid pgrp session ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and fields[0] != "Z" and int(fields[3]) == session_id:
            yield int(entry.name)


def command_line(pid: int) -> str:
    """The (possibly retitled) command line of ``pid``; empty once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def pick_free_ports(host: str, count: int) -> list[int]:
    """Distinct ports the kernel hands out for binds to port 0, all held until all are chosen."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((host, 0))
            ports.append(int(probe.getsockname()[1]))
        return ports


def raise_nofile_limit() -> None:
    """Run in the child between fork and exec: soft RLIMIT_NOFILE up to the hard limit.

    Only calls getrlimit/setrlimit: no locks, no allocation-heavy work, so it is safe in the
    forked child even when the parent has threads.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_NOFILE if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def read_greeting(host: str, port: int, timeout_s: float) -> bytes:
    """Connect, read the first line the server sends, disconnect."""
    with socket.create_connection((host, port), timeout=timeout_s) as conn:
        data = b""
        while not data.endswith(b"\n") and len(data) < MAX_GREETING_BYTES:
            chunk = conn.recv(MAX_GREETING_BYTES)
            if not chunk:
                break
            data += chunk
        return data


def inotify_instance_limit() -> int | None:
    """``fs.inotify.max_user_instances``, or None where it cannot be read (not Linux)."""
    try:
        return int(INOTIFY_INSTANCES_PATH.read_text())
    except (OSError, ValueError):
        return None


#: Bound for one greeting probe while a server starts, and the pause between probes.
GREETING_PROBE_TIMEOUT_S = 1.0
GREETING_POLL_S = 0.02


def wait_for_greeting(
    process: subprocess.Popen[bytes],
    host: str,
    port: int,
    timeout_s: float,
    *,
    name: str,
    log_tail: Callable[[], str],
) -> None:
    """Return once ``host:port`` answers ``* OK``; DevServerError with ``log_tail()`` when
    ``process`` exits first or nothing greets within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while True:
        code = process.poll()
        if code is not None:
            raise DevServerError(f"{name} exited with code {code} during startup\n{log_tail()}")
        try:
            greeting = read_greeting(host, port, GREETING_PROBE_TIMEOUT_S)
        except OSError as exc:
            last_error = str(exc)
        else:
            if greeting.startswith(b"* OK"):
                return
            last_error = f"unexpected greeting {greeting[:200]!r}"
        if time.monotonic() > deadline:
            raise DevServerError(
                f"{name} did not greet on {host}:{port} within {timeout_s:g} s "
                f"({last_error})\n{log_tail()}"
            )
        time.sleep(GREETING_POLL_S)
