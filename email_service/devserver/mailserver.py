"""What the tests and benchmarks need of a throwaway IMAP server (core: a protocol only).

``DovecotServer`` and ``CyrusServer`` both fit it, so a test written against ``MailServer``
runs unchanged on either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class MailServer(Protocol):
    """A running dev IMAP server: loopback ports, a self-signed CA, users, mail, folders."""

    workdir: Path  #: starting again here (on the same ports) keeps users, mail, certificate
    host: str
    imap_port: int  #: plain IMAP, with STARTTLS
    imaps_port: int  #: implicit TLS
    lmtp_port: int
    ca_file: Path  #: the server's self-signed certificate, usable as the CA file

    def add_user(self, name: str, password: str) -> None: ...

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX") -> None: ...

    def create_folder(self, user: str, folder: str) -> None: ...

    def delete_folder(self, user: str, folder: str) -> None: ...

    def stop(self) -> None: ...
