"""A throwaway Dovecot IMAP server for the integration tests and ``email-service demo`` (shell).

``start_dovecot(workdir)`` writes a self-contained config under ``workdir``, starts
``dovecot -F`` as our child (in a session of its own, output to a file, never a pipe), waits
for the IMAP greeting and returns a ``DovecotServer``: plain IMAP with STARTTLS, implicit
TLS and LMTP on free loopback ports, users in a passwd-file, mail in
``workdir/home/<user>/Maildir``. ``stop()`` (or leaving a ``with`` block) ends every process
of the instance; nothing is registered globally.

Starting again on the same ``workdir`` keeps the users, the maildirs and the certificate:
that is how a test restarts "the server" (``doveadm reload`` would drop every session).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import smtplib
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from types import TracebackType

from email_service.devserver.accounts import grant_traversal, plan_accounts
from email_service.devserver.config import (
    DEFAULT_IDLE_NOTIFY_INTERVAL_S,
    Accounts,
    ConfigSpec,
    check_user_name,
    render_config,
)
from email_service.devserver.errors import DevServerError
from email_service.devserver.install import (
    ensure_dovecot_installed,
    find_doveadm,
    find_dovecot_binary,
)
from email_service.devserver.passwd import save_user
from email_service.devserver.process import (
    file_size,
    inotify_instance_limit,
    output_of,
    pick_free_ports,
    raise_nofile_limit,
    session_members,
    tail_lines,
)
from email_service.devserver.process import wait_for_greeting as wait_for_server_greeting
from email_service.devserver.workdir import (
    PreparedWorkdir,
    make_base_dir,
    master_output_path,
    prepare_workdir,
)

__all__ = [
    "DevServerError",
    "DovecotServer",
    "ensure_dovecot_installed",
    "find_dovecot_binary",
    "start_dovecot",
]

logger = logging.getLogger(__name__)

#: Loopback only: the dev server accepts clear-text passwords without TLS.
HOST = "127.0.0.1"

#: Shipped by the Debian package; only non-ECDHE ciphers use it, Dovecot 2.3 warns without.
DH_PARAMS = Path("/usr/share/dovecot/dh.pem")

#: Bound for one doveadm call; they take milliseconds, this only bounds a hang.
DOVEADM_TIMEOUT_S = 30.0

#: Bound for one LMTP delivery.
LMTP_TIMEOUT_S = 30.0

#: How long stop() waits for the master to exit after ``doveadm stop`` before SIGKILL.
STOP_TIMEOUT_S = 10.0

#: How long stop() waits for orphaned children once the master has exited.
CHILDREN_EXIT_TIMEOUT_S = 5.0

#: Interval between checks while waiting for a greeting, a password or processes to exit.
POLL_INTERVAL_S = 0.02

#: How long add_user() waits for Dovecot to accept a new password; it re-reads the
#: passwd-file on a lookup after its size or mtime changed (within about a second).
USER_VISIBLE_TIMEOUT_S = 5.0

#: Fresh ports are picked this many times when another process took one of ours between
#: the probe and Dovecot's bind.
START_ATTEMPTS = 3

#: Lines of the Dovecot log quoted in a DevServerError.
LOG_TAIL_LINES = 30

#: Envelope sender of test deliveries.
ENVELOPE_FROM = "devserver@localhost"

#: Domain of LMTP recipients; ``auth_username_format = %n`` strips it again.
MAIL_DOMAIN = "localhost"


@dataclass
class DovecotServer:
    """A running throwaway Dovecot; see the module docstring."""

    workdir: Path
    config_path: Path
    host: str
    imap_port: int
    imaps_port: int
    lmtp_port: int
    ca_file: Path
    _: KW_ONLY
    instance_name: str
    base_dir: Path
    log_path: Path
    users_file: Path
    doveadm_path: Path
    accounts: Accounts = field(repr=False)
    process: subprocess.Popen[bytes] = field(repr=False)
    #: Where this instance's lines start in the shared log (a restart appends to it).
    log_offset: int = field(default=0, repr=False)
    temporary_dirs: list[Path] = field(default_factory=list, repr=False)
    _users_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopped: bool = field(default=False, repr=False)
    _reaped: bool = field(default=False, repr=False)

    # -- users and mail -------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Add ``name`` or replace its password; returns once Dovecot accepts the login."""
        with self._users_lock:
            save_user(self.users_file, name, password, self.accounts)
            if self.is_running():
                self._wait_for_password(name, password)

    def _wait_for_password(self, name: str, password: str) -> None:
        deadline = time.monotonic() + USER_VISIBLE_TIMEOUT_S
        while True:
            result = self._run_doveadm(("auth", "test", "-x", "service=imap", name, password))
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise DevServerError(
                    f"Dovecot did not accept the new password of {name} within "
                    f"{USER_VISIBLE_TIMEOUT_S:g} s: {output_of(result)}{self._log_suffix()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """Put ``raw`` into ``folder``: LMTP for INBOX (as an MTA would), doveadm otherwise."""
        check_user_name(user)
        if folder.upper() != "INBOX":
            self.doveadm("save", "-u", user, "-m", folder, stdin=raw)
            return
        try:
            with smtplib.LMTP(self.host, self.lmtp_port, timeout=LMTP_TIMEOUT_S) as lmtp:
                refused = lmtp.sendmail(ENVELOPE_FROM, [f"{user}@{MAIL_DOMAIN}"], raw)
        except (smtplib.SMTPException, OSError) as exc:
            raise DevServerError(
                f"LMTP delivery to {user} failed: {exc}{self._log_suffix()}"
            ) from exc
        if refused:
            raise DevServerError(f"LMTP refused {user}: {refused}{self._log_suffix()}")

    def create_folder(self, user: str, folder: str) -> None:
        """Create ``folder`` for ``user`` and subscribe it."""
        self.doveadm("mailbox", "create", "-s", "-u", user, folder)

    def delete_folder(self, user: str, folder: str) -> None:
        """Delete ``folder`` with its messages and subfolders and unsubscribe it.

        Creating it again gives a new UIDVALIDITY (Dovecot keeps a per-user counter).
        """
        self.doveadm("mailbox", "delete", "-r", "-s", "-u", user, folder)

    # -- processes ------------------------------------------------------------------------

    def doveadm(self, *args: str, stdin: bytes | None = None) -> str:
        """Run ``doveadm -c CONF ARGS`` against this instance and return its stdout."""
        result = self._run_doveadm(args, stdin=stdin)
        if result.returncode != 0:
            raise DevServerError(
                f"`doveadm {' '.join(args[:2])}` exited with {result.returncode}: "
                f"{output_of(result)}{self._log_suffix()}"
            )
        return result.stdout.decode(errors="replace")

    def _run_doveadm(
        self, args: Iterable[str], stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        command = [str(self.doveadm_path), "-c", str(self.config_path), *args]
        try:
            return subprocess.run(
                command,
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=DOVEADM_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DevServerError(f"doveadm failed: {exc}{self._log_suffix()}") from exc

    def is_running(self) -> bool:
        """True while the master process is alive."""
        return self.process.poll() is None

    def pids(self) -> list[int]:
        """Every live process of this instance: the master and all it started.

        The master leads a session of its own and Dovecot's children stay in it, so this
        also finds children orphaned by a master that died. Empty once stop() has seen
        them all gone (the session id may then be reused by an unrelated process).
        """
        if self._reaped:
            return []
        return sorted(session_members(self.process.pid))

    def stop(self) -> None:
        """Stop the instance and wait (bounded) until none of its processes is left."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self._stop_master()
            self._reap_children()
            self._reaped = True
        finally:
            for directory in self.temporary_dirs:
                shutil.rmtree(directory, ignore_errors=True)
        logger.info("stopped Dovecot %s", self.instance_name)

    def _stop_master(self) -> None:
        if self.process.poll() is None:
            # doveadm stop signals the master and then waits for its pid to vanish, which a
            # child of ours only does once we reap it: run it alongside our own wait().
            stopper = subprocess.Popen(
                [str(self.doveadm_path), "-c", str(self.config_path), "stop"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            with stopper:
                try:
                    self.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    logger.warning("Dovecot %s ignored doveadm stop", self.instance_name)
                    self.process.kill()
                try:
                    output, _ = stopper.communicate(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    stopper.kill()
                    output, _ = stopper.communicate()
                if stopper.returncode != 0:
                    logger.warning("doveadm stop: %s", output.decode(errors="replace").strip())
        self.process.wait()

    def _reap_children(self) -> None:
        deadline = time.monotonic() + CHILDREN_EXIT_TIMEOUT_S
        while pids := self.pids():
            if time.monotonic() > deadline:
                logger.warning("killing leftover Dovecot processes %s", pids)
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + CHILDREN_EXIT_TIMEOUT_S
            time.sleep(POLL_INTERVAL_S)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """This instance's last log lines and the master's own output (startup errors)."""
        parts = []
        sources = ((self.log_path, self.log_offset), (master_output_path(self.workdir), 0))
        for path, offset in sources:
            text = tail_lines(path, lines, offset=offset)
            if text:
                parts.append(f"--- {path} ---\n{text}")
        return "\n".join(parts)

    def _log_suffix(self) -> str:
        tail = self.log_tail()
        return f"\n{tail}" if tail else ""

    def __enter__(self) -> DovecotServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _launch(
    binary: Path,
    doveadm: Path,
    prepared: PreparedWorkdir,
    ports: list[int],
    *,
    max_connections: int,
    idle_notify_interval_s: int,
) -> DovecotServer:
    workdir = prepared.root
    base_dir, temporary_dirs = make_base_dir(workdir)
    instance_name = f"emailsvc-{secrets.token_hex(4)}"
    spec = ConfigSpec(
        instance_name=instance_name,
        base_dir=base_dir,
        state_dir=prepared.state_dir,
        log_path=prepared.log_path,
        host=HOST,
        imap_port=ports[0],
        imaps_port=ports[1],
        lmtp_port=ports[2],
        cert_file=prepared.ca_file,
        key_file=prepared.key_file,
        dh_file=DH_PARAMS if DH_PARAMS.exists() else None,
        users_file=prepared.users_file,
        home_root=prepared.home_root,
        oauth2_args_file=prepared.oauth2_args_file,
        accounts=prepared.accounts,
        max_connections=max_connections,
        idle_notify_interval_s=idle_notify_interval_s,
    )
    config_path = workdir / "dovecot.conf"
    config_path.write_text(render_config(spec))
    log_offset = file_size(prepared.log_path)
    command = [str(binary), "-F", "-c", str(config_path)]
    with master_output_path(workdir).open("wb") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
            preexec_fn=raise_nofile_limit,  # noqa: PLW1509 - only calls setrlimit
        )
    logger.info(
        "started Dovecot %s (pid %d): imap %d, imaps %d, lmtp %d",
        instance_name,
        process.pid,
        *ports,
    )
    return DovecotServer(
        workdir=workdir,
        config_path=config_path,
        host=HOST,
        imap_port=ports[0],
        imaps_port=ports[1],
        lmtp_port=ports[2],
        ca_file=prepared.ca_file,
        instance_name=instance_name,
        base_dir=base_dir,
        log_path=prepared.log_path,
        users_file=prepared.users_file,
        doveadm_path=doveadm,
        accounts=prepared.accounts,
        process=process,
        log_offset=log_offset,
        temporary_dirs=temporary_dirs,
    )


def wait_for_greeting(server: DovecotServer, timeout_s: float) -> None:
    """Return once the IMAP port answers ``* OK``; DevServerError with the log otherwise."""
    wait_for_server_greeting(
        server.process,
        server.host,
        server.imap_port,
        timeout_s,
        name="Dovecot",
        log_tail=server.log_tail,
    )


def start_dovecot(
    workdir: Path,
    *,
    users: Iterable[tuple[str, str]] = (),
    oauth2_introspection_url: str | None = None,
    max_connections: int = 2000,
    startup_timeout_s: float = 15,
    ports: tuple[int, int, int] | None = None,
    idle_notify_interval_s: int = DEFAULT_IDLE_NOTIFY_INTERVAL_S,
) -> DovecotServer:
    """Start a throwaway Dovecot in ``workdir`` and return once it greets IMAP clients.

    ``ports`` = (imap, imaps, lmtp) pins ports, e.g. to restart on the same ones; a 0 there
    (and every port by default) is replaced by a free one. Raises DevServerError with the
    log tail when Dovecot is missing, refuses the config or does not greet in time.
    """
    binary = ensure_dovecot_installed()
    doveadm = find_doveadm(binary)
    if doveadm is None:
        raise DevServerError(f"doveadm is missing next to {binary}: reinstall dovecot-core")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    accounts = plan_accounts()
    grant_traversal(workdir)
    prepared = prepare_workdir(workdir, accounts, users, oauth2_introspection_url)
    _mention_inotify_limit(max_connections)
    for attempt in range(1, START_ATTEMPTS + 1):
        free = iter(pick_free_ports(HOST, 3))
        chosen = [port or next(free) for port in ports or (0, 0, 0)]
        server = _launch(
            binary,
            doveadm,
            prepared,
            chosen,
            max_connections=max_connections,
            idle_notify_interval_s=idle_notify_interval_s,
        )
        try:
            wait_for_greeting(server, startup_timeout_s)
        except DevServerError as exc:
            server.stop()
            if ports is None and attempt < START_ATTEMPTS and "in use" in str(exc):
                logger.info("a port was taken during startup; retrying with fresh ports")
                continue
            raise
        except BaseException:
            server.stop()
            raise
        return server
    raise AssertionError("unreachable: the last attempt returns or raises")


def _mention_inotify_limit(max_connections: int) -> None:
    limit = inotify_instance_limit()
    if limit is not None and max_connections > limit:
        logger.info(
            "fs.inotify.max_user_instances is %d: IDLE sessions beyond about that many fall "
            "back to a 30 s poll instead of the 0.5 s push; for many-connection runs raise it "
            "with `sysctl -w fs.inotify.max_user_instances=8192`",
            limit,
        )
