"""A throwaway Cyrus IMAP server for the tests: the second real IMAP server (shell).

Mirrors ``dovecot``: ``start_cyrus(workdir)`` unpacks Cyrus when needed
(``cyrus_install``), writes a self-contained ``imapd.conf`` and ``cyrus.conf``
(``cyrus_config``), starts the ``master`` as our child (a session of its own, output to a
file), waits for the IMAP greeting and returns a ``CyrusServer``: plain IMAP with STARTTLS,
implicit TLS and LMTP on free loopback ports, users in a ``sasldb2`` file, mail under
``workdir/spool``. Started as root, the master drops to the dev server's mail user
(``accounts.MAIL_USER``); started by anyone else, everything runs as that user.

Starting again on the same ``workdir`` (and ``ports``) keeps the users, the mail and the
certificate: that is how a test restarts the server. Users and folders are managed
through IMAP by an admin account that may act as any user, so the server object never
needs a user's password.

What Cyrus does that Dovecot does not, and why it is here: IDLE pushes EXISTS within a
millisecond (Dovecot waits 500 ms), and a folder deleted and recreated under a session in
IDLE is announced as one ``* 1 EXPUNGE`` per old message, with no BYE.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import logging
import os
import pwd
import secrets
import signal
import smtplib
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from types import TracebackType

from email_service.devserver.accounts import MAIL_USER, ensure_system_user, grant_traversal
from email_service.devserver.certs import ensure_self_signed_cert
from email_service.devserver.config import check_user_name
from email_service.devserver.cyrus_config import (
    ADMIN_USER,
    REALM,
    CyrusSpec,
    render_cyrus_conf,
    render_imapd_conf,
)
from email_service.devserver.cyrus_install import CyrusInstall, ensure_cyrus_installed
from email_service.devserver.errors import DevServerError
from email_service.devserver.process import (
    file_size,
    output_of,
    pick_free_ports,
    session_members,
    tail_lines,
    wait_for_greeting,
)

__all__ = ["CyrusServer", "start_cyrus"]

logger = logging.getLogger(__name__)

#: Loopback only: the dev server accepts clear-text passwords without TLS.
HOST = "127.0.0.1"
#: Domain of LMTP recipients (``virtdomains: no`` ignores it).
MAIL_DOMAIN = "localhost"
#: Envelope sender of test deliveries.
ENVELOPE_FROM = "devserver@localhost"
#: Bounds for one LMTP delivery, one admin IMAP command and one saslpasswd2 call.
LMTP_TIMEOUT_S = 30.0
IMAP_TIMEOUT_S = 30.0
TOOL_TIMEOUT_S = 30.0
#: How long stop() waits for the master (and then its children) after SIGTERM.
STOP_TIMEOUT_S = 10.0
#: Interval between checks while waiting for a greeting or for processes to exit.
POLL_INTERVAL_S = 0.02
#: Fresh ports are picked this many times when another process took one between the probe
#: and the master's bind.
START_ATTEMPTS = 3
#: Lines of the master's log quoted in a DevServerError.
LOG_TAIL_LINES = 30
#: Subdirectories of ``configdirectory`` Cyrus expects to exist (its ``mkimap`` makes them).
CONFIG_SUBDIRS = (
    "db",
    "proc",
    "log",
    "lock",
    "sieve",
    "user",
    "quota",
    "msg",
    "ptclient",
    "socket",
)
#: Unix socket paths are limited to 108 bytes; Cyrus's longest below ``configdirectory`` is
#: ``socket/idle.<pid>`` (idled and every imapd bind one there, whatever ``idlesocket`` says).
MAX_CONFIG_DIR_CHARS = 80


@dataclass
class CyrusServer:
    """A running throwaway Cyrus; see the module docstring."""

    workdir: Path
    host: str
    imap_port: int
    imaps_port: int
    lmtp_port: int
    ca_file: Path
    _: KW_ONLY
    install: CyrusInstall = field(repr=False)
    sasldb: Path = field(repr=False)
    log_path: Path = field(repr=False)
    admin_password: str = field(repr=False)
    owner: tuple[int, int] | None = field(repr=False)
    process: subprocess.Popen[bytes] = field(repr=False)
    log_offset: int = field(default=0, repr=False)
    _users_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopped: bool = field(default=False, repr=False)

    # -- users and mail -------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Add ``name`` (with an empty INBOX) or replace its password."""
        check_user_name(name)
        with self._users_lock:
            save_password(self.install, self.sasldb, self.owner, name, password)
        with self._admin() as admin:
            typ, data = admin.create(_quoted(f"user/{name}"))
            if typ != "OK" and "exists" not in _text(data).lower():
                raise DevServerError(f"creating the mailbox of {name}: {_text(data)}")

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """Put ``raw`` into ``folder``: LMTP for INBOX (as an MTA would), APPEND otherwise."""
        check_user_name(user)
        if folder.upper() != "INBOX":
            with self._as_user(user) as client:
                _check(client.append(_quoted(folder), None, None, raw), f"APPEND to {folder}")
            return
        try:
            with smtplib.LMTP(self.host, self.lmtp_port, timeout=LMTP_TIMEOUT_S) as lmtp:
                refused = lmtp.sendmail(ENVELOPE_FROM, [f"{user}@{MAIL_DOMAIN}"], raw)
        except (smtplib.SMTPException, OSError) as exc:
            raise DevServerError(f"LMTP delivery to {user} failed: {exc}{self._suffix()}") from exc
        if refused:
            raise DevServerError(f"LMTP refused {user}: {refused}{self._suffix()}")

    def create_folder(self, user: str, folder: str) -> None:
        """Create ``folder`` for ``user`` and subscribe it."""
        with self._as_user(user) as client:
            _check(client.create(_quoted(folder)), f"CREATE {folder}")
            _check(client.subscribe(_quoted(folder)), f"SUBSCRIBE {folder}")

    def delete_folder(self, user: str, folder: str) -> None:
        """Delete ``folder``; creating it again gives it a new UIDVALIDITY."""
        with self._as_user(user) as client:
            _check(client.delete(_quoted(folder)), f"DELETE {folder}")

    @contextlib.contextmanager
    def _admin(self) -> Iterator[imaplib.IMAP4]:
        with self._imap() as client:
            client.login(ADMIN_USER, self.admin_password)
            yield client

    @contextlib.contextmanager
    def _as_user(self, user: str) -> Iterator[imaplib.IMAP4]:
        """An IMAP session of ``user``, authenticated as the admin (PLAIN with authzid)."""
        check_user_name(user)
        plain = f"{user}\0{ADMIN_USER}\0{self.admin_password}".encode()
        with self._imap() as client:
            client.authenticate("PLAIN", lambda _challenge: plain)
            yield client

    @contextlib.contextmanager
    def _imap(self) -> Iterator[imaplib.IMAP4]:
        """A plain IMAP session (the standard library's imaplib: the dev server only needs a
        few commands, and imapclient belongs to ``imap_session``)."""
        try:
            client = imaplib.IMAP4(self.host, self.imap_port, timeout=IMAP_TIMEOUT_S)
        except OSError as exc:
            raise DevServerError(f"cannot reach Cyrus: {exc}{self._suffix()}") from exc
        try:
            yield client
        except imaplib.IMAP4.error as exc:
            raise DevServerError(f"Cyrus refused: {exc}{self._suffix()}") from exc
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    # -- processes ------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self.process.poll() is None

    def pids(self) -> list[int]:
        """Every live process of this instance (the master leads a session of its own)."""
        if self._stopped and self.process.poll() is not None:
            return []
        return sorted(session_members(self.process.pid))

    def stop(self) -> None:
        """SIGTERM the master (it ends its children), wait (bounded), then SIGKILL leftovers."""
        if self._stopped:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("Cyrus master ignored SIGTERM; killing it")
                self.process.kill()
                self.process.wait()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while leftovers := sorted(session_members(self.process.pid)):
            if time.monotonic() > deadline:
                for pid in leftovers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(POLL_INTERVAL_S)
        self._stopped = True
        logger.info("stopped Cyrus in %s", self.workdir)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The master's log since this start, and its own output (startup errors)."""
        sources = ((self.log_path, self.log_offset), (self.workdir / "master.out", 0))
        texts = ((path, tail_lines(path, lines, offset=offset)) for path, offset in sources)
        return "\n".join(f"--- {path} ---\n{text}" for path, text in texts if text)

    def _suffix(self) -> str:
        tail = self.log_tail()
        return f"\n{tail}" if tail else ""

    def __enter__(self) -> CyrusServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def save_password(
    install: CyrusInstall, sasldb: Path, owner: tuple[int, int] | None, name: str, password: str
) -> None:
    """Add ``name`` to the sasldb or replace its password (``saslpasswd2``)."""
    if any(ch in password for ch in "\r\n\0"):
        raise DevServerError(f"the password of {name!r} contains a newline or NUL")
    command = [str(install.saslpasswd), "-p", "-c", "-f", str(sasldb), "-u", REALM, name]
    try:
        result = subprocess.run(
            command,
            input=password.encode(),
            env=install.environment(),
            capture_output=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevServerError(f"saslpasswd2 failed: {exc}") from exc
    if result.returncode != 0:
        raise DevServerError(f"saslpasswd2 {name} failed: {output_of(result)}")
    if owner is not None:  # written by root, read by the Cyrus processes
        os.chown(sasldb, *owner)
    sasldb.chmod(0o640)


def _quoted(mailbox: str) -> str:
    """A mailbox name as an IMAP quoted string (imaplib sends arguments as they are)."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(data: Sequence[bytes | None] | None) -> str:
    return b" ".join(d for d in data or [] if isinstance(d, bytes)).decode(errors="replace")


def _check(reply: tuple[str, Sequence[bytes | None]], what: str) -> None:
    typ, data = reply
    if typ != "OK":
        raise DevServerError(f"{what} failed: {typ} {_text(data)}")


@dataclass(frozen=True)
class _Prepared:
    """The parts of the work directory kept across restarts."""

    root: Path
    config_dir: Path
    spool_dir: Path
    sasldb: Path
    cert_file: Path
    key_file: Path
    admin_password: str
    cyrus_user: str
    cyrus_group: str
    owner: tuple[int, int] | None


def _prepare(workdir: Path) -> _Prepared:
    if os.geteuid() == 0:
        account = ensure_system_user(MAIL_USER)
        owner: tuple[int, int] | None = (account.pw_uid, account.pw_gid)
        user, group = account.pw_name, grp.getgrgid(account.pw_gid).gr_name
        grant_traversal(workdir)
    else:
        owner = None
        user, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    pair = ensure_self_signed_cert(workdir / "tls")
    cert_file, key_file = pair.cert_file, pair.key_file
    password_file = workdir / "admin-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(16))
        password_file.chmod(0o600)
    config_dir, spool_dir = workdir / "config", workdir / "spool"
    if len(str(config_dir)) > MAX_CONFIG_DIR_CHARS:
        raise DevServerError(
            f"{config_dir} is too long for Cyrus's unix sockets (at most "
            f"{MAX_CONFIG_DIR_CHARS} characters): use a shorter work directory"
        )
    for directory in (config_dir, spool_dir, *(config_dir / name for name in CONFIG_SUBDIRS)):
        directory.mkdir(mode=0o750, exist_ok=True)
    if owner is not None:
        for path in (config_dir, spool_dir, key_file, *config_dir.rglob("*"), *spool_dir.glob("*")):
            os.chown(path, *owner)
    return _Prepared(
        root=workdir,
        config_dir=config_dir,
        spool_dir=spool_dir,
        sasldb=workdir / "sasldb2",
        cert_file=cert_file,
        key_file=key_file,
        admin_password=password_file.read_text().strip(),
        cyrus_user=user,
        cyrus_group=group,
        owner=owner,
    )


def _launch(install: CyrusInstall, prepared: _Prepared, ports: list[int]) -> CyrusServer:
    workdir = prepared.root
    spec = CyrusSpec(
        imapd_conf=workdir / "imapd.conf",
        config_dir=prepared.config_dir,
        spool_dir=prepared.spool_dir,
        sasldb=prepared.sasldb,
        cert_file=prepared.cert_file,
        key_file=prepared.key_file,
        programs_dir=install.programs_dir,
        host=HOST,
        imap_port=ports[0],
        imaps_port=ports[1],
        lmtp_port=ports[2],
        cyrus_user=prepared.cyrus_user,
        cyrus_group=prepared.cyrus_group,
        syslog_prefix=f"emailsvc-cyrus-{secrets.token_hex(3)}",
    )
    spec.imapd_conf.write_text(render_imapd_conf(spec))
    cyrus_conf = workdir / "cyrus.conf"
    cyrus_conf.write_text(render_cyrus_conf(spec))
    log_path = workdir / "master.log"
    log_offset = file_size(log_path)
    command = [
        str(install.programs_dir / "master"),
        *("-C", str(spec.imapd_conf), "-M", str(cyrus_conf)),
        *("-p", str(prepared.config_dir / "master.pid"), "-L", str(log_path)),
    ]
    with (workdir / "master.out").open("ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=install.environment(),
            start_new_session=True,
        )
    logger.info("started Cyrus (pid %d): imap %d, imaps %d, lmtp %d", process.pid, *ports)
    return CyrusServer(
        workdir=workdir,
        host=HOST,
        imap_port=ports[0],
        imaps_port=ports[1],
        lmtp_port=ports[2],
        ca_file=prepared.cert_file,
        install=install,
        sasldb=prepared.sasldb,
        log_path=log_path,
        admin_password=prepared.admin_password,
        owner=prepared.owner,
        process=process,
        log_offset=log_offset,
    )


def _wait_for_greeting(server: CyrusServer, timeout_s: float) -> None:
    wait_for_greeting(
        server.process,
        server.host,
        server.imap_port,
        timeout_s,
        name="Cyrus",
        log_tail=server.log_tail,
    )


def start_cyrus(
    workdir: Path,
    *,
    users: Iterable[tuple[str, str]] = (),
    ports: tuple[int, int, int] | None = None,
    startup_timeout_s: float = 15,
    install_dir: Path | None = None,
) -> CyrusServer:
    """Start a throwaway Cyrus in ``workdir`` and return once it greets IMAP clients.

    ``ports`` = (imap, imaps, lmtp) pins ports, e.g. to restart on the same ones; a 0 there
    (and every port by default) is replaced by a free one. Raises DevServerError with the
    log tail when Cyrus cannot be unpacked or started.
    """
    install = ensure_cyrus_installed(install_dir)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    prepared = _prepare(workdir)
    if not prepared.sasldb.exists():  # the admin first: it creates every user's mailbox
        save_password(install, prepared.sasldb, prepared.owner, ADMIN_USER, prepared.admin_password)
    for attempt in range(1, START_ATTEMPTS + 1):
        free = iter(pick_free_ports(HOST, 3))
        chosen = [port or next(free) for port in ports or (0, 0, 0)]
        server = _launch(install, prepared, chosen)
        try:
            _wait_for_greeting(server, startup_timeout_s)
        except DevServerError as exc:
            server.stop()
            if ports is None and attempt < START_ATTEMPTS and "in use" in str(exc).lower():
                logger.info("a port was taken during startup; retrying with fresh ports")
                continue
            raise
        except BaseException:
            server.stop()
            raise
        for name, password in users:
            server.add_user(name, password)
        return server
    raise AssertionError("unreachable: the last attempt returns or raises")
