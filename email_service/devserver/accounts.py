"""Chooses and creates the system accounts the throwaway Dovecot runs as (shell).

Started as root, Dovecot refuses to touch mail as uid 0, so the maildirs belong to a system
user of our own (``emailsvc-mail``), created on first use; the internal and login processes
use the ``dovecot`` and ``dovenull`` users of the Debian package. Started by anyone else,
every process runs as that user and nothing switches users.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import subprocess
import time
from pathlib import Path

from email_service.devserver.config import Accounts
from email_service.devserver.errors import DevServerError

logger = logging.getLogger(__name__)

#: Owner of the maildirs when we run as root; a system account without a login shell.
MAIL_USER = "emailsvc-mail"

#: Dovecot's unprivileged internal account (auth, anvil, stats) from the Debian package.
INTERNAL_USER = "dovecot"

#: Dovecot's login-process account from the Debian package; owns nothing.
LOGIN_USER = "dovenull"

#: useradd takes /etc/passwd's lock; a parallel test process creating the same user makes
#: ours fail with "cannot lock", so we retry this many times.
USERADD_ATTEMPTS = 20

#: Pause between useradd attempts; lock holders finish within milliseconds.
USERADD_RETRY_S = 0.1

#: Bound for one useradd call.
USERADD_TIMEOUT_S = 30.0


def _user_exists(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def ensure_system_user(name: str = MAIL_USER) -> pwd.struct_passwd:
    """The system user ``name``, created if missing; safe when two processes race."""
    last_error = ""
    for _attempt in range(USERADD_ATTEMPTS):
        existing = _user_exists(name)
        if existing is not None:
            return existing
        group_flag = ["-g", name] if _group_exists(name) else ["--user-group"]
        command = [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "email-service dev IMAP server mail owner",
            *group_flag,
            name,
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, timeout=USERADD_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DevServerError(f"could not create the system user {name}: {exc}") from exc
        if result.returncode == 0:
            logger.info("created system user %s for the dev server's maildirs", name)
            continue
        # Exit 9 means another process created it first; lock errors are worth a retry.
        last_error = result.stderr.decode(errors="replace").strip()
        time.sleep(USERADD_RETRY_S)
    existing = _user_exists(name)
    if existing is not None:
        return existing
    raise DevServerError(
        f"could not create the system user {name} with useradd: {last_error}; create it by "
        f"hand (`useradd --system --user-group --shell /usr/sbin/nologin {name}`)"
    )


def plan_accounts() -> Accounts:
    """Accounts for an instance started by the current process (creating the mail user)."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(os.getegid()).gr_name
        return Accounts(
            internal_user=me.pw_name,
            internal_group=group,
            login_user=me.pw_name,
            mail_uid=me.pw_uid,
            mail_gid=os.getegid(),
            privileged=False,
        )
    for needed in (INTERNAL_USER, LOGIN_USER):
        if _user_exists(needed) is None:
            raise DevServerError(
                f"the system user {needed} is missing; it comes with Dovecot's Debian package "
                "(apt-get install --reinstall dovecot-core)"
            )
    mail = ensure_system_user(MAIL_USER)
    return Accounts(
        internal_user=INTERNAL_USER,
        internal_group=grp.getgrgid(pwd.getpwnam(INTERNAL_USER).pw_gid).gr_name,
        login_user=LOGIN_USER,
        mail_uid=mail.pw_uid,
        mail_gid=mail.pw_gid,
        privileged=True,
    )


def grant_traversal(path: Path) -> None:
    """Let unprivileged Dovecot processes reach ``path``: add o+x where an ancestor lacks it.

    pytest makes its temporary directories 0700, which would lock the mail and auth users
    out of the work directory. Only the search bit is added (nobody can list the
    directories), and only when we are root and it is missing.
    """
    if os.geteuid() != 0:
        return
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            logger.info("adding o+x to %s so Dovecot's mail user can reach its files", directory)
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give ``path`` and everything below it to ``uid``/``gid`` (no-op when not root)."""
    if os.geteuid() != 0:
        return
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
