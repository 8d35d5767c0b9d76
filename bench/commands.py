"""What one command of a catch-up costs through the service's IMAP session, against bare.

Run with ``python -m bench --only commands [--server cyrus]``, or alone with
``python bench/commands.py [--repeat 200] [--server cyrus]``. Starts its own Dovecot (or
Cyrus) with one user holding a few messages, then times each command a catch-up sends,
``--repeat`` times: ``UID SEARCH UID n:*``, ``UID FETCH RFC822.SIZE`` and ``UID FETCH
BODY.PEEK[]`` of one message, through ``ImapSession`` (what the listener uses) and through
a bare imapclient connection with ``TCP_NODELAY`` (the floor). imapclient writes a command
and its CRLF in two ``send`` calls; without ``TCP_NODELAY``, Nagle's algorithm holds the
CRLF back until the first part is acknowledged, and a server that waits for the complete
line delays that ACK (about 40 ms on Linux): every command of a catch-up pays it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PASSWORD, SERVERS, bare_client, start_server, summary_ms
from email_service.devserver.samples import make_message
from email_service.imap.session import ConnectOptions, ImapSession, PasswordLogin
from email_service.model import ImapEndpoint, Security

#: Messages in the folder: the search finds the newest, the fetches take one.
MESSAGES = 5


def _timed(action: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.monotonic()
        action()
        times.append(time.monotonic() - started)
    return times


def measure_commands(repeat: int, server_kind: str = "dovecot") -> dict[str, object]:
    """p50/p99 of each catch-up command, service session and bare client, ``repeat`` each."""
    workdir = Path(tempfile.mkdtemp(prefix="email-service-bench-"))
    server = start_server(server_kind, workdir, [("svc", PASSWORD)])
    try:
        for n in range(MESSAGES):
            server.deliver("svc", make_message(f"command {n}"))
        session = ImapSession.open(
            ImapEndpoint(
                "localhost", server.imaps_port, Security.TLS, tls_ca_file=str(server.ca_file)
            ),
            PasswordLogin("svc", PASSWORD),
            ConnectOptions(timeout_s=10, keepalive=True, verify_tls=True, allow_private_hosts=True),
        )
        bare = bare_client(server, "svc")
        try:
            session.examine("INBOX")
            bare.select_folder("INBOX", readonly=True)
            service = {
                "uid_search": _timed(lambda: session.search_uids_after(MESSAGES - 1), repeat),
                "fetch_size": _timed(lambda: session.fetch_sizes([MESSAGES]), repeat),
                "fetch_body": _timed(lambda: session.fetch_messages([MESSAGES]), repeat),
            }
            baseline = {
                "uid_search": _timed(lambda: bare.search(["UID", f"{MESSAGES}:*"]), repeat),
                "fetch_size": _timed(lambda: bare.fetch([MESSAGES], [b"RFC822.SIZE"]), repeat),
                "fetch_body": _timed(lambda: bare.fetch([MESSAGES], [b"BODY.PEEK[]"]), repeat),
            }
        finally:
            session.close()
            bare.logout()
    finally:
        server.stop()
    return {
        "server": server_kind,
        "service": {name: summary_ms(times) for name, times in service.items()},
        "baseline": {name: summary_ms(times) for name, times in baseline.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--server", choices=SERVERS, default="dovecot")
    args = parser.parse_args()
    print(json.dumps(measure_commands(args.repeat, args.server), indent=2))


if __name__ == "__main__":
    main()
