"""Finds Dovecot, or installs it from Debian packages when we are root (shell).

Installing ``dovecot-imapd`` starts the system's own Dovecot on ports 143 and 993 unless a
``/usr/sbin/policy-rc.d`` that exits 101 forbids service starts; we put one there for the
duration of the install and remove it afterwards, but only if we created it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from email_service.devserver.errors import DevServerError

logger = logging.getLogger(__name__)

#: Debian packages that provide ``dovecot``, ``doveadm`` and the imap and lmtp executables.
DEBIAN_PACKAGES = ("dovecot-imapd", "dovecot-lmtpd")

#: Where distributions put the ``dovecot`` master when it is not on PATH (sbin often is not).
DOVECOT_CANDIDATES = (
    Path("/usr/sbin/dovecot"),
    Path("/usr/local/sbin/dovecot"),
    Path("/usr/bin/dovecot"),
)

#: Where the per-protocol executables live (Debian, Fedora, source builds).
LIBEXEC_CANDIDATES = (
    Path("/usr/lib/dovecot"),
    Path("/usr/libexec/dovecot"),
    Path("/usr/local/libexec/dovecot"),
)

#: The executables a dev server needs besides the master.
REQUIRED_EXECUTABLES = ("imap", "imap-login", "lmtp")

#: Denies every service start during the install (invoke-rc.d's documented "action
#: forbidden" exit code).
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
POLICY_RC_D_SCRIPT = (
    "#!/bin/sh\n# Written by email_service.devserver during apt-get install.\nexit 101\n"
)

#: apt-get may wait this long for another apt/dpkg (a parallel test process) to finish.
APT_LOCK_TIMEOUT_S = 300

#: Upper bound for ``apt-get update`` plus install on a slow mirror.
APT_TIMEOUT_S = 900.0

#: What a human should run when we cannot install for them.
INSTALL_HINT = (
    "install Dovecot 2.3 with IMAP and LMTP, e.g. `sudo apt-get install dovecot-imapd "
    "dovecot-lmtpd` on Debian/Ubuntu (then `sudo systemctl disable --now dovecot` if you do "
    "not want the system service), `sudo dnf install dovecot` on Fedora, `brew install "
    "dovecot` on macOS"
)


def find_dovecot_binary() -> Path | None:
    """The ``dovecot`` master binary if it and ``doveadm`` are installed, else None."""
    found = shutil.which("dovecot")
    candidates = [Path(found)] if found else []
    candidates.extend(DOVECOT_CANDIDATES)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            if find_doveadm(candidate) is None:
                continue
            return candidate
    return None


def find_doveadm(dovecot: Path) -> Path | None:
    """``doveadm`` next to the master binary or on PATH."""
    for directory in (dovecot.parent, dovecot.parent.parent / "bin"):
        candidate = directory / "doveadm"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("doveadm")
    return Path(found) if found else None


def find_libexec_dir() -> Path | None:
    """The directory holding the imap and lmtp executables, or None when one is missing."""
    for directory in LIBEXEC_CANDIDATES:
        if all((directory / name).is_file() for name in REQUIRED_EXECUTABLES):
            return directory
    return None


def _installed() -> Path | None:
    binary = find_dovecot_binary()
    if binary is None or find_libexec_dir() is None:
        return None
    return binary


def _can_apt_install() -> bool:
    return (
        os.geteuid() == 0
        and Path("/etc/debian_version").exists()
        and shutil.which("apt-get") is not None
    )


def run_package_tool(command: list[str], *, hint: str, cwd: Path | None = None) -> str:
    """Run apt-get, apt-cache or dpkg-deb non-interactively; its stdout, or DevServerError
    with the end of its stderr and ``hint``."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    logger.info("running %s", " ".join(command))
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=APT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevServerError(f"`{' '.join(command)}` failed: {exc}; {hint}") from exc
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace").strip()[-2000:]
        raise DevServerError(
            f"`{' '.join(command)}` exited with {result.returncode}: {tail}; {hint}"
        )
    return result.stdout.decode(errors="replace")


def apt_get(*args: str, hint: str, cwd: Path | None = None) -> str:
    """``apt-get ARGS``, waiting for another apt or dpkg to finish first."""
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_S}", *args]
    return run_package_tool(command, hint=hint, cwd=cwd)


def _run_apt(*args: str) -> None:
    apt_get(*args, hint=INSTALL_HINT)


def _create_policy_rc_d() -> bool:
    """Forbid service starts; True when the file is ours to remove afterwards."""
    try:
        fd = os.open(POLICY_RC_D, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    except FileExistsError:
        logger.info("%s already exists; leaving it as it is", POLICY_RC_D)
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(POLICY_RC_D_SCRIPT)
    return True


@contextmanager
def services_forbidden() -> Iterator[None]:
    """While inside, package installs start no service (our policy-rc.d, removed after)."""
    created = _create_policy_rc_d()
    try:
        yield
    finally:
        if created:
            POLICY_RC_D.unlink(missing_ok=True)


def ensure_dovecot_installed() -> Path:
    """The ``dovecot`` binary, installing the Debian packages first when needed and possible.

    Raises DevServerError naming the packages to install when Dovecot is missing and we are
    not root on Debian/Ubuntu.
    """
    binary = _installed()
    if binary is not None:
        return binary
    if not _can_apt_install():
        raise DevServerError(f"Dovecot (dovecot, doveadm, imap, lmtp) is missing: {INSTALL_HINT}")
    with services_forbidden():
        _run_apt("update")
        _run_apt("install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES)
    binary = _installed()
    if binary is None:
        raise DevServerError(
            f"apt-get installed {' '.join(DEBIAN_PACKAGES)} but dovecot, doveadm or the "
            f"imap/lmtp executables are still missing; {INSTALL_HINT}"
        )
    return binary
