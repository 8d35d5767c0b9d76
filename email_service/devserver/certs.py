"""Makes the throwaway server's self-signed TLS certificate with the openssl CLI (shell).

The certificate is its own CA (``basicConstraints = CA:TRUE``, ``keyCertSign``), so a client
verifies the server with ``ssl.create_default_context(cafile=cert)`` and a host name of
``localhost`` or ``127.0.0.1``, both of which are in the subjectAltName.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from email_service.devserver.errors import DevServerError

logger = logging.getLogger(__name__)

#: Validity of the certificate; a throwaway server lives minutes, a month leaves room for a
#: long-running demo.
CERT_VALIDITY_DAYS = 30

#: How long openssl may take; EC P-256 key generation is milliseconds, this only bounds a hang.
OPENSSL_TIMEOUT_S = 30.0

#: The names clients use to reach the dev server.
SUBJECT_ALT_NAMES = "DNS:localhost,IP:127.0.0.1"

#: Where the Debian package installs the openssl CLI, tried when it is not on PATH.
OPENSSL_FALLBACK = Path("/usr/bin/openssl")


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its unencrypted private key."""

    cert_file: Path
    key_file: Path


def find_openssl() -> Path:
    """The openssl CLI, or a DevServerError saying what to install."""
    found = shutil.which("openssl")
    if found is not None:
        return Path(found)
    if OPENSSL_FALLBACK.exists():
        return OPENSSL_FALLBACK
    raise DevServerError("the openssl command is missing: install it (apt-get install openssl)")


def make_self_signed_cert(directory: Path, *, common_name: str = "localhost") -> CertPair:
    """Write ``cert.pem`` and ``key.pem`` (mode 0600) into ``directory`` and return them."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / "cert.pem"
    key_file = directory / "key.pem"
    command = [
        str(find_openssl()),
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-sha256",
        "-days",
        str(CERT_VALIDITY_DAYS),
        "-subj",
        f"/CN={common_name}",
        "-addext",
        f"subjectAltName={SUBJECT_ALT_NAMES}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyCertSign",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-keyout",
        str(key_file),
        "-out",
        str(cert_file),
    ]
    # Create the key file private before openssl writes it (openssl keeps an existing mode).
    key_file.unlink(missing_ok=True)
    os.close(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevServerError(f"openssl could not make the test certificate: {exc}") from exc
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise DevServerError(f"openssl could not make the test certificate: {stderr}")
    cert_file.chmod(0o644)
    key_file.chmod(0o600)
    logger.debug("made self-signed certificate %s", cert_file)
    return CertPair(cert_file=cert_file, key_file=key_file)


def ensure_self_signed_cert(directory: Path) -> CertPair:
    """``directory``'s ``cert.pem`` and ``key.pem``, made first if missing (kept across
    restarts, so clients that trusted the certificate keep trusting it)."""
    pair = CertPair(cert_file=directory / "cert.pem", key_file=directory / "key.pem")
    if pair.cert_file.exists() and pair.key_file.exists():
        return pair
    return make_self_signed_cert(directory)
