"""The pure parts of the Cyrus dev server: which libraries to install, the rendered configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from email_service.devserver.cyrus_config import CyrusSpec, render_cyrus_conf, render_imapd_conf
from email_service.devserver.cyrus_install import parse_library_depends
from email_service.devserver.errors import DevServerError

APT_CACHE_DEPENDS = """cyrus-common
  PreDepends: init-system-helpers
  Depends: adduser
 |Depends: <default-mta>
    exim4-daemon-light
  Depends: libc6
  Depends: libclamav12
  Depends: libical3
  Depends: libsasl2-modules
  Depends: libzephyr4
    libzephyr4-krb5
  Recommends: cyrus-imapd
cyrus-imapd
  Depends: cyrus-common
  Depends: libc6
  Depends: libwrap0
"""


def test_library_depends_keep_the_needed_libraries_and_add_the_sasl_plugins() -> None:
    assert parse_library_depends(APT_CACHE_DEPENDS) == [
        "libc6",
        "libical3",
        "libsasl2-modules",
        "libwrap0",
        "libsasl2-modules-db",
    ]


def spec(root: Path) -> CyrusSpec:
    return CyrusSpec(
        imapd_conf=root / "imapd.conf",
        config_dir=root / "config",
        spool_dir=root / "spool",
        sasldb=root / "sasldb2",
        cert_file=root / "tls/cert.pem",
        key_file=root / "tls/key.pem",
        programs_dir=Path("/opt/cyrus/usr/lib/cyrus/bin"),
        host="127.0.0.1",
        imap_port=1143,
        imaps_port=1993,
        lmtp_port=1024,
        cyrus_user="mail",
        cyrus_group="mail",
        syslog_prefix="emailsvc-cyrus-test",
    )


def test_every_program_reads_our_imapd_conf_and_listens_on_loopback() -> None:
    cyrus_conf = render_cyrus_conf(spec(Path("/w")))
    commands = [line for line in cyrus_conf.splitlines() if "cmd=" in line]
    assert len(commands) == 6
    assert all("-C /w/imapd.conf" in line for line in commands)
    assert 'listen="127.0.0.1:1143"' in cyrus_conf and 'listen="127.0.0.1:1993"' in cyrus_conf
    imapd_conf = render_imapd_conf(spec(Path("/w")))
    assert "configdirectory: /w/config\n" in imapd_conf
    assert "duplicatesuppression: no\n" in imapd_conf


def test_a_path_cyrus_would_split_is_refused() -> None:
    with pytest.raises(DevServerError, match="cannot be used"):
        render_cyrus_conf(spec(Path("/work dir")))
