"""Counting a local server's TCP connections from ``/proc/net/tcp`` (shell, Linux).

For the tests and the benchmarks that check how many connections the worker holds.
"""

from __future__ import annotations

#: ``/proc/net/tcp`` state of an established connection.
TCP_ESTABLISHED = "01"


def count_connections_to(port: int) -> int:
    """Established TCP connections on this machine whose remote end is local ``port`` (the
    clients' side of them, so a server's own sockets are not counted)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if remote_port == port and fields[3] == TCP_ESTABLISHED:
                        count += 1
        except FileNotFoundError:
            continue
    return count
