"""Unpacks Cyrus IMAP from Debian's packages into a directory of its own (shell).

``cyrus-imapd`` conflicts with ``dovecot-imapd`` (both provide ``imap-server``), so it is
never installed: ``apt-get download`` fetches ``cyrus-common``, ``cyrus-imapd`` and
``sasl2-bin`` (for ``saslpasswd2``) and ``dpkg -x`` unpacks them under the install
directory, whose programs then run with ``LD_LIBRARY_PATH`` pointing at the libraries that
came with them. The shared libraries the packages depend on are ordinary packages that
conflict with nothing and start nothing: as root they are installed with apt-get (so apt
resolves what they need in turn); otherwise the missing ones are downloaded and unpacked
too. The install directory is ``/var/cache/email-service/cyrus`` as root, else
``~/.cache/email-service/cyrus``; a lock file keeps two test processes from unpacking at
once, and a marker file makes the next call return at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from email_service.devserver.errors import DevServerError
from email_service.devserver.install import apt_get, run_package_tool, services_forbidden

logger = logging.getLogger(__name__)

#: Unpacked, never installed: their programs, libraries and ``saslpasswd2``.
UNPACKED_PACKAGES = ("cyrus-common", "cyrus-imapd", "sasl2-bin")

#: Libraries Cyrus depends on that none of the programs we run loads (the virus scanner's
#: and Zephyr notifications'); leaving them out saves pulling ClamAV in.
UNNEEDED_LIBRARIES = ("libclamav", "libzephyr")

#: Always wanted beside the libraries apt lists: the PLAIN/LOGIN and sasldb SASL plugins.
SASL_PLUGINS = ("libsasl2-modules", "libsasl2-modules-db")

#: The programs the dev server runs, relative to the unpacked root.
PROGRAMS_DIR = Path("usr/lib/cyrus/bin")
REQUIRED_PROGRAMS = ("master", "imapd", "lmtpd", "idled", "ctl_cyrusdb")
SASLPASSWD = Path("usr/sbin/saslpasswd2")

#: Written last by a complete unpack; its presence means there is nothing to do.
MARKER = "installed"

#: Root's install directory (kept across test runs, like an installed package).
SYSTEM_DIR = Path("/var/cache/email-service/cyrus")

#: What a human should run when we cannot install for them.
INSTALL_HINT = (
    "Cyrus IMAP is unpacked from Debian's packages (cyrus-common, cyrus-imapd, sasl2-bin) "
    "with `apt-get download` and `dpkg -x`; run the tests once as root on Debian 12, or "
    "unpack those packages into ~/.cache/email-service/cyrus/root yourself"
)

_NOT_FOUND = re.compile(r"^\s*(\S+) => not found", re.MULTILINE)


@dataclass(frozen=True)
class CyrusInstall:
    """Where the unpacked Cyrus is, and the environment its programs need."""

    root: Path

    @property
    def programs_dir(self) -> Path:
        return self.root / PROGRAMS_DIR

    @property
    def saslpasswd(self) -> Path:
        return self.root / SASLPASSWD

    def library_dirs(self) -> list[Path]:
        """The unpacked shared-library directories (``lib/<triplet>``, ``usr/lib/<triplet>``)."""
        found = [*self.root.glob("lib/*-linux-gnu"), *self.root.glob("usr/lib/*-linux-gnu")]
        return sorted(path for path in found if path.is_dir())

    def environment(self) -> dict[str, str]:
        """``os.environ`` plus ``LD_LIBRARY_PATH`` (and ``SASL_PATH`` when the SASL plugins
        were unpacked rather than installed)."""
        env = dict(os.environ)
        dirs = [str(path) for path in self.library_dirs()]
        if env.get("LD_LIBRARY_PATH"):
            dirs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(dirs)
        plugins = [path / "sasl2" for path in self.library_dirs() if (path / "sasl2").is_dir()]
        if plugins:
            env["SASL_PATH"] = str(plugins[0])
        return env


def default_install_dir() -> Path:
    if os.geteuid() == 0:
        return SYSTEM_DIR
    return Path.home() / ".cache" / "email-service" / "cyrus"


def _run(command: list[str], *, cwd: Path | None = None) -> str:
    return run_package_tool(command, hint=INSTALL_HINT, cwd=cwd)


def _apt(*args: str, cwd: Path | None = None) -> str:
    return apt_get(*args, hint=INSTALL_HINT, cwd=cwd)


def parse_library_depends(apt_cache_output: str) -> list[str]:
    """The ``lib*`` packages among the ``Depends:`` of ``apt-cache depends`` output, without
    the ones we do not need, plus the SASL plugins (core: text in, names out)."""
    names: list[str] = []
    for line in apt_cache_output.splitlines():
        kind, _, name = line.strip().lstrip("|").partition(":")
        name = name.strip()
        if kind.strip() not in ("Depends", "PreDepends") or not name.startswith("lib"):
            continue
        if name.startswith(UNNEEDED_LIBRARIES) or name.startswith("<") or name in names:
            continue
        names.append(name)
    return names + [name for name in SASL_PLUGINS if name not in names]


def _installed(package: str) -> bool:
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status}", package],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.strip() == b"installed"


def _download_and_unpack(packages: list[str], root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="cyrus-debs-") as scratch:
        directory = Path(scratch)
        if os.geteuid() == 0:
            directory.chmod(0o755)  # apt's download user (_apt) writes here
        try:
            _apt("download", *packages, cwd=directory)
        except DevServerError:
            if os.geteuid() != 0:
                raise
            _apt("update")  # a fresh machine has no package lists yet
            _apt("download", *packages, cwd=directory)
        for deb in sorted(directory.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(root)])


def _apt_install(packages: list[str]) -> None:
    with services_forbidden():
        try:
            _apt("install", "-y", "--no-install-recommends", *packages)
        except DevServerError:
            _apt("update")  # a fresh machine has no package lists yet
            _apt("install", "-y", "--no-install-recommends", *packages)


def _unresolved_libraries(install: CyrusInstall) -> list[str]:
    missing: set[str] = set()
    for program in [*(install.programs_dir / p for p in REQUIRED_PROGRAMS), install.saslpasswd]:
        try:
            result = subprocess.run(
                ["ldd", str(program)],
                env=install.environment(),
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DevServerError(f"ldd {program} failed: {exc}") from exc
        missing.update(_NOT_FOUND.findall(result.stdout.decode(errors="replace")))
    return sorted(missing)


def _complete(install: CyrusInstall) -> bool:
    programs = [install.programs_dir / name for name in REQUIRED_PROGRAMS]
    return (install.root.parent / MARKER).exists() and all(
        os.access(path, os.X_OK) for path in [*programs, install.saslpasswd]
    )


def ensure_cyrus_installed(directory: Path | None = None) -> CyrusInstall:
    """The unpacked Cyrus under ``directory`` (default ``default_install_dir()``), unpacking
    it first when needed. Raises DevServerError saying what is missing."""
    base = (directory or default_install_dir()).resolve()
    install = CyrusInstall(base / "root")
    if _complete(install):
        return install
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DevServerError(f"Cyrus IMAP is not unpacked in {base}: {INSTALL_HINT}")
    base.mkdir(parents=True, exist_ok=True)
    with (base / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be unpacking it
        if _complete(install):
            return install
        libraries = parse_library_depends(_run(["apt-cache", "depends", *UNPACKED_PACKAGES[:2]]))
        missing = [name for name in libraries if not _installed(name)]
        shutil.rmtree(install.root, ignore_errors=True)
        install.root.mkdir()
        if missing and os.geteuid() == 0:
            _apt_install(missing)
            missing = []
        _download_and_unpack([*UNPACKED_PACKAGES, *missing], install.root)
        unresolved = _unresolved_libraries(install)
        if unresolved:
            raise DevServerError(
                f"the unpacked Cyrus programs need {', '.join(unresolved)}, which are not "
                f"installed; install the packages that provide them. {INSTALL_HINT}"
            )
        (base / MARKER).write_text(" ".join([*UNPACKED_PACKAGES, *missing]) + "\n")
        logger.info("unpacked Cyrus IMAP into %s", install.root)
    return install
