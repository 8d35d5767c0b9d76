"""Lays out the throwaway Dovecot's work directory (shell: files and directories).

workdir/
  dovecot.conf      written per start (ports and instance name change)
  dovecot.log       Dovecot's log, appended by every start
  dovecot.out       the master's stdout/stderr (errors before logging is up)
  users             passwd-file; kept across restarts
  oauth2.conf.ext   oauth2 passdb args, when an introspection URL is given
  tls/              cert.pem (also the CA file) and key.pem; kept across restarts
  home/<user>/      mail homes, owned by the mail user; kept across restarts
  state/            Dovecot's state_dir
  run/              base_dir (sockets, master.pid), unless the path is too long
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from email_service.devserver.certs import ensure_self_signed_cert
from email_service.devserver.config import Accounts, render_oauth2_args
from email_service.devserver.passwd import save_user, share_with_auth

logger = logging.getLogger(__name__)

#: Unix socket paths are limited to 108 bytes and Dovecot's longest socket path below
#: base_dir ("token-login/imap-urlauth" and friends) takes about 30 of them.
MAX_BASE_DIR_CHARS = 70

#: Parent of base_dir when the work directory's path is too long for unix sockets; short,
#: and mkdtemp makes the directory itself unguessable and ours.
SHORT_TMP_DIR = Path("/tmp")  # noqa: S108


def master_output_path(workdir: Path) -> Path:
    """Where the master's own stdout and stderr go (config errors before logging starts)."""
    return workdir / "dovecot.out"


@dataclass(frozen=True)
class PreparedWorkdir:
    """The files start_dovecot prepared; shared by every start attempt."""

    root: Path
    accounts: Accounts
    ca_file: Path
    key_file: Path
    users_file: Path
    home_root: Path
    state_dir: Path
    log_path: Path
    oauth2_args_file: Path | None


def prepare_workdir(
    workdir: Path,
    accounts: Accounts,
    users: Iterable[tuple[str, str]],
    oauth2_introspection_url: str | None,
) -> PreparedWorkdir:
    """Certificate (kept across restarts), passwd-file, mail home, state dir, oauth2 args."""
    pair = ensure_self_signed_cert(workdir / "tls")
    cert_file, key_file = pair.cert_file, pair.key_file

    users_file = workdir / "users"
    if not users_file.exists():
        users_file.touch()
        share_with_auth(users_file, accounts)
    for name, password in users:
        save_user(users_file, name, password, accounts)

    home_root = workdir / "home"
    home_root.mkdir(mode=0o750, exist_ok=True)
    if accounts.privileged:
        os.chown(home_root, accounts.mail_uid, accounts.mail_gid)

    state_dir = workdir / "state"
    state_dir.mkdir(exist_ok=True)

    oauth2_args_file = None
    if oauth2_introspection_url is not None:
        oauth2_args_file = workdir / "oauth2.conf.ext"
        oauth2_args_file.write_text(render_oauth2_args(oauth2_introspection_url))
        share_with_auth(oauth2_args_file, accounts)

    return PreparedWorkdir(
        root=workdir,
        accounts=accounts,
        ca_file=cert_file,
        key_file=key_file,
        users_file=users_file,
        home_root=home_root,
        state_dir=state_dir,
        log_path=workdir / "dovecot.log",
        oauth2_args_file=oauth2_args_file,
    )


def make_base_dir(workdir: Path) -> tuple[Path, list[Path]]:
    """``workdir/run``, or a short directory under /tmp when socket paths would be too long."""
    base_dir = workdir / "run"
    if len(str(base_dir)) <= MAX_BASE_DIR_CHARS:
        base_dir.mkdir(mode=0o755, exist_ok=True)
        return base_dir, []
    parent = SHORT_TMP_DIR if SHORT_TMP_DIR.is_dir() else None
    short = Path(tempfile.mkdtemp(prefix="dovecot-", dir=parent))
    short.chmod(0o755)
    logger.info("work directory path too long for unix sockets; base_dir is %s", short)
    return short, [short]
