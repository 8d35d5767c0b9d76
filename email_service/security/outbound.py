"""Connections to a tenant's servers: resolve once, check, connect to what was checked (shell).

Every connection to a server a tenant named (the worker's and the API's IMAP sessions, every
OAuth token request) is opened here. The name is resolved once, every address it resolves
to is judged by ``security.ssrf.decide_host``, and the socket connects to those same addresses, in
the resolver's order, never to a second answer: a DNS record that changes between the check
and the connect (rebinding) cannot send the connection somewhere else. TLS is layered on
by the caller with the host *name*, so certificates are still verified against it.

Raises ``HostUnresolvable`` (the name does not resolve) and ``HostRefused`` (it resolves to
an address the guard refuses); a failed connect raises the ``OSError`` of the last address
tried, for the caller's own translation (``imap_session``, ``oauth.client``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

from email_service.errors import HostRefused, HostUnresolvable
from email_service.security.ssrf import decide_host

#: A socket option as ``setsockopt`` takes it: (level, option, value).
SocketOption = tuple[int, int, int | bytes]
#: An address to connect to: family and ``getaddrinfo``'s socket address.
Target = tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]]


@dataclass(frozen=True)
class HostGuard:
    """The policy of ``IMAP_ALLOW_PRIVATE_HOSTS``, applied at each connection."""

    allow_private: bool

    def checked_targets(self, host: str, port: int) -> list[Target]:
        """Every address ``host`` resolves to, once all of them passed the guard."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid name"
            raise HostUnresolvable(f"the host name does not resolve ({reason})") from None
        targets: list[Target] = []
        for family, _type, _proto, _name, address in infos:
            target = (family, address)
            if target not in targets:
                targets.append(target)  # type: ignore[arg-type]
        refusal = decide_host(
            [str(address[0]) for _family, address in targets], allow_private=self.allow_private
        )
        if refusal is not None:
            raise HostRefused(f"the host {refusal}")
        return targets

    def connect(
        self,
        host: str,
        port: int,
        timeout_s: float | None,
        socket_options: Iterable[SocketOption] = (),
    ) -> socket.socket:
        """A TCP connection to ``host`` at an address that passed the guard."""
        options = tuple(socket_options)
        last_error: OSError | None = None
        for family, address in self.checked_targets(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for level, option, value in options:
                    sock.setsockopt(level, option, value)
                sock.settimeout(timeout_s)
                sock.connect(address)
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            return sock
        assert last_error is not None  # checked_targets never returns an empty list
        raise last_error
