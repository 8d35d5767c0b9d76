"""Writes the throwaway Dovecot's passwd-file (shell: one file under the work directory)."""

from __future__ import annotations

import grp
import logging
import os
import time
from pathlib import Path

from email_service.devserver.config import Accounts, passwd_key, render_passwd_line

logger = logging.getLogger(__name__)


def save_user(users_file: Path, name: str, password: str, accounts: Accounts) -> None:
    """Add ``name`` to the passwd-file or replace its line, atomically.

    Dovecot notices a changed passwd-file only by its size and whole-second mtime (measured:
    a same-sized rewrite within the same second is never seen), so the new file's mtime is
    always pushed past the old one's, a second into the future if need be.
    """
    line = render_passwd_line(name, password)
    try:
        existing = users_file.read_text().splitlines(keepends=True)
        previous_mtime_s = int(users_file.stat().st_mtime)
    except FileNotFoundError:
        existing = []
        previous_mtime_s = 0
    key = passwd_key(name)
    kept = [entry for entry in existing if entry.split(":", 1)[0] != key]
    temporary = users_file.with_name(users_file.name + ".tmp")
    temporary.write_text("".join([*kept, line]))
    share_with_auth(temporary, accounts)
    mtime_s = max(int(time.time()), previous_mtime_s + 1)
    os.utime(temporary, (mtime_s, mtime_s))
    os.replace(temporary, users_file)
    logger.debug("saved user %s in %s", name, users_file)


def share_with_auth(path: Path, accounts: Accounts) -> None:
    """Make ``path`` readable by Dovecot's auth process (the internal group) and nobody else."""
    if accounts.privileged:
        os.chown(path, 0, grp.getgrnam(accounts.internal_group).gr_gid)
        path.chmod(0o640)
    else:
        path.chmod(0o600)
