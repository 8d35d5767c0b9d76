"""Renders the throwaway Dovecot's configuration files (core: data in, text out).

Everything Dovecot needs is in the one generated ``dovecot.conf``: nothing from the system's
``/etc/dovecot/conf.d`` is included, so the instance behaves the same on every machine and
two instances never share a socket, a state file or a log.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from email_service.devserver.errors import DevServerError

logger = logging.getLogger(__name__)

#: Extra processes and clients on top of ``max_connections``: doveadm, LMTP deliveries and the
#: login that is still handing over a connection must not be refused at the limit.
LIMIT_HEADROOM = 64

#: Dovecot's own default for ``default_client_limit``; we never go below it.
MIN_CLIENT_LIMIT = 1000

#: Dovecot's own default for ``default_process_limit``; we never go below it.
MIN_PROCESS_LIMIT = 100

#: imap-login processes in high-performance mode (``service_count = 0``): each serves many
#: connections, a handful spreads TLS work over the CPUs.
LOGIN_PROCESS_LIMIT = 4

#: Memory cap per login process; one login process proxies up to ``max_connections`` TLS
#: connections and Dovecot's 256 MiB default runs out near a thousand of them.
LOGIN_VSZ_LIMIT_MB = 1024

#: LMTP processes: deliveries take milliseconds, and every process that may exist counts
#: against auth's client limit (Dovecot warns at startup when that does not add up).
LMTP_PROCESS_LIMIT = 64

#: The URLAUTH login service is unused, but its default process limit would also count
#: against auth's client limit.
URLAUTH_LOGIN_PROCESS_LIMIT = 4

#: ``auth_failure_delay`` in seconds; 0 is the smallest Dovecot accepts. 2.3.19 still answers
#: a wrong password after about 0.5 s (its failure queue is flushed by a fixed 500 ms timer),
#: instead of 2 s with the default; the next correct login is not delayed.
AUTH_FAILURE_DELAY_S = 0

#: How often Dovecot checks a mailbox for changes during IDLE when inotify is not available;
#: with inotify (the normal case) changes are pushed about 500 ms after they happen anyway.
MAILBOX_IDLE_CHECK_INTERVAL_S = 1

#: Dovecot's default "* OK Still here" interval during IDLE; short enough for NAT boxes and
#: half-open detection, long enough not to show up in traces.
DEFAULT_IDLE_NOTIFY_INTERVAL_S = 120

#: Timeout of one token introspection request from Dovecot to the OAuth2 endpoint.
OAUTH2_TIMEOUT_MS = 5000

#: Characters allowed in paths written into the config: Dovecot splits ``args`` on spaces and
#: expands ``%`` in ``home``, so anything outside this set would be misread.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+@,=-]+$")

#: User names Dovecot accepts with ``auth_username_format = %n`` and that are safe in a
#: passwd-file line and as an LMTP recipient.
_SAFE_USER = re.compile(r"^[A-Za-z0-9._-]+$")
#: User names that can log in (a passwd-file line and ``%n`` survive them), for tests of
#: logins with spaces and quotes: no ``:`` (the field separator), ``@`` (``%n`` cuts there),
#: ``/`` or ``%`` (the home path), backslash or control characters.
_LOGIN_USER = re.compile(r"^[^:@/%\\\x00-\x1f\x7f]+$")


@dataclass(frozen=True)
class Accounts:
    """Which system accounts the instance's processes run as."""

    internal_user: str
    internal_group: str
    login_user: str
    mail_uid: int
    mail_gid: int
    #: False when Dovecot is started by an unprivileged user: no chroot, no user switching.
    privileged: bool


@dataclass(frozen=True)
class ServiceLimits:
    """Process and client limits sized for a number of simultaneous IMAP connections."""

    imap_processes: int
    userip_connections: int
    default_processes: int
    default_clients: int
    auth_clients: int
    anvil_clients: int
    login_clients: int
    login_processes: int


@dataclass(frozen=True)
class ConfigSpec:
    """Everything that differs between two instances of the throwaway server."""

    instance_name: str
    base_dir: Path
    state_dir: Path
    log_path: Path
    host: str
    imap_port: int
    imaps_port: int
    lmtp_port: int
    cert_file: Path
    key_file: Path
    dh_file: Path | None
    users_file: Path
    home_root: Path
    oauth2_args_file: Path | None
    accounts: Accounts
    max_connections: int
    idle_notify_interval_s: int = DEFAULT_IDLE_NOTIFY_INTERVAL_S


def plan_limits(max_connections: int) -> ServiceLimits:
    """Size Dovecot's limits so ``max_connections`` IMAP sessions fit, with headroom.

    Every ``imap`` process holds a connection to anvil and the login processes hold one to
    auth, so their client limits grow with the process count.
    """
    if max_connections < 1:
        raise DevServerError(f"max_connections must be at least 1, got {max_connections}")
    sessions = max_connections + LIMIT_HEADROOM
    return ServiceLimits(
        imap_processes=sessions,
        userip_connections=sessions,
        default_processes=max(MIN_PROCESS_LIMIT, sessions),
        default_clients=max(MIN_CLIENT_LIMIT, 2 * sessions),
        auth_clients=max(MIN_CLIENT_LIMIT, 2 * sessions),
        anvil_clients=max(MIN_CLIENT_LIMIT, 4 * sessions),
        login_clients=sessions,
        login_processes=LOGIN_PROCESS_LIMIT,
    )


def check_user_name(name: str) -> None:
    """Refuse user names that would not survive a passwd-file line or ``%n``."""
    if not _SAFE_USER.match(name):
        raise DevServerError(
            f"user name {name!r} is not usable: use letters, digits, '.', '_' and '-' only"
        )


def passwd_key(name: str) -> str:
    """The first field of ``name``'s passwd-file line: Dovecot escapes quotes in the expanded
    user name before it looks the line up."""
    if not _LOGIN_USER.match(name) or name != name.strip():
        raise DevServerError(f"user name {name!r} cannot be a passwd-file user")
    return name.replace("'", "\\'").replace('"', '\\"')


def render_passwd_line(name: str, password: str) -> str:
    """One passwd-file line: the password in clear (``{PLAIN}``), uid/gid/home from defaults."""
    key = passwd_key(name)
    if any(ch in password for ch in ":\r\n\0"):
        raise DevServerError(f"the password of {name!r} contains ':', a newline or NUL")
    return f"{key}:{{PLAIN}}{password}::::::\n"


def _path(path: Path) -> str:
    text = str(path)
    if not _SAFE_PATH.match(text):
        raise DevServerError(
            f"path {text!r} cannot be used in a Dovecot config: pick a work directory without "
            "spaces, quotes, '%' or '#'"
        )
    return text


def render_oauth2_args(introspection_url: str) -> str:
    """The ``args`` file of the oauth2 passdb: RFC 7662 introspection, one POST per login."""
    if any(ch.isspace() for ch in introspection_url):
        raise DevServerError(f"introspection URL {introspection_url!r} contains whitespace")
    return (
        "# Generated by email_service.devserver: RFC 7662 token introspection.\n"
        "introspection_mode = post\n"
        f"introspection_url = {introspection_url}\n"
        "force_introspection = yes\n"
        "username_attribute = username\n"
        "active_attribute = active\n"
        "active_value = true\n"
        f"timeout_msecs = {OAUTH2_TIMEOUT_MS}\n"
    )


def _render_accounts(accounts: Accounts) -> str:
    uid, gid = accounts.mail_uid, accounts.mail_gid
    return (
        f"default_internal_user = {accounts.internal_user}\n"
        f"default_internal_group = {accounts.internal_group}\n"
        f"default_login_user = {accounts.login_user}\n"
        f"mail_uid = {uid}\n"
        f"mail_gid = {gid}\n"
        f"first_valid_uid = {uid}\n"
        f"last_valid_uid = {uid}\n"
        f"first_valid_gid = {gid}\n"
        f"last_valid_gid = {gid}\n"
    )


def _render_auth(spec: ConfigSpec) -> str:
    users = _path(spec.users_file)
    mechanisms = "plain login"
    oauth2 = ""
    if spec.oauth2_args_file is not None:
        mechanisms += " xoauth2 oauthbearer"
        oauth2 = (
            "passdb {\n"
            "  driver = oauth2\n"
            "  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {_path(spec.oauth2_args_file)}\n"
            "}\n"
        )
    uid, gid = spec.accounts.mail_uid, spec.accounts.mail_gid
    return (
        "disable_plaintext_auth = no\n"
        f"auth_mechanisms = {mechanisms}\n"
        "auth_username_format = %n\n"
        # Any character in user names (the default set has no space or quote); the
        # passwd-file writer refuses the ones that would break a line.
        "auth_username_chars =\n"
        "auth_cache_size = 0\n"
        f"auth_failure_delay = {AUTH_FAILURE_DELAY_S} secs\n"
        "auth_verbose = yes\n"
        "passdb {\n"
        "  driver = passwd-file\n"
        f"  args = scheme=PLAIN username_format=%n {users}\n"
        "  mechanisms = plain login\n"
        "}\n"
        f"{oauth2}"
        "userdb {\n"
        "  driver = passwd-file\n"
        f"  args = username_format=%n {users}\n"
        f"  default_fields = uid={uid} gid={gid} home={_path(spec.home_root)}/%n\n"
        "}\n"
    )


def _render_ssl(spec: ConfigSpec) -> str:
    dh = f"ssl_dh = <{_path(spec.dh_file)}\n" if spec.dh_file is not None else ""
    return (
        "ssl = yes\n"
        f"ssl_cert = <{_path(spec.cert_file)}\n"
        f"ssl_key = <{_path(spec.key_file)}\n"
        f"{dh}"
        "ssl_min_protocol = TLSv1.2\n"
    )


def _render_services(spec: ConfigSpec, limits: ServiceLimits) -> str:
    # Without root there is no chroot; the services that chroot by default must not try.
    no_chroot = "" if spec.accounts.privileged else "  chroot =\n"
    unchrooted = "" if spec.accounts.privileged else "service ipc {\n  chroot =\n}\n"
    return (
        "service imap-login {\n"
        "  inet_listener imap {\n"
        f"    port = {spec.imap_port}\n"
        "  }\n"
        "  inet_listener imaps {\n"
        f"    port = {spec.imaps_port}\n"
        "    ssl = yes\n"
        "  }\n"
        "  service_count = 0\n"
        "  process_min_avail = 1\n"
        f"  process_limit = {limits.login_processes}\n"
        f"  client_limit = {limits.login_clients}\n"
        f"  vsz_limit = {LOGIN_VSZ_LIMIT_MB}M\n"
        f"{no_chroot}"
        "}\n"
        "service imap {\n"
        f"  process_limit = {limits.imap_processes}\n"
        "}\n"
        "service lmtp {\n"
        "  inet_listener lmtp {\n"
        f"    port = {spec.lmtp_port}\n"
        "  }\n"
        f"  process_limit = {LMTP_PROCESS_LIMIT}\n"
        "}\n"
        "service imap-urlauth-login {\n"
        f"  process_limit = {URLAUTH_LOGIN_PROCESS_LIMIT}\n"
        f"{no_chroot}"
        "}\n"
        "service auth {\n"
        f"  client_limit = {limits.auth_clients}\n"
        "}\n"
        "service anvil {\n"
        f"  client_limit = {limits.anvil_clients}\n"
        "  unix_listener anvil-auth-penalty {\n"
        "    mode = 0\n"
        "  }\n"
        f"{no_chroot}"
        "}\n"
        f"{unchrooted}"
    )


def render_config(spec: ConfigSpec) -> str:
    """The whole ``dovecot.conf`` of one throwaway instance."""
    limits = plan_limits(spec.max_connections)
    log = _path(spec.log_path)
    return (
        "# Generated by email_service.devserver for a throwaway test instance.\n"
        "# Self-contained on purpose: the system's conf.d is not included.\n"
        f"instance_name = {spec.instance_name}\n"
        f"base_dir = {_path(spec.base_dir)}\n"
        f"state_dir = {_path(spec.state_dir)}\n"
        f"log_path = {log}\n"
        f"info_log_path = {log}\n"
        f"debug_log_path = {log}\n"
        f"listen = {spec.host}\n"
        "protocols = imap lmtp\n"
        "hostname = localhost\n"
        "shutdown_clients = yes\n"
        f"{_render_accounts(spec.accounts)}"
        f"default_process_limit = {limits.default_processes}\n"
        f"default_client_limit = {limits.default_clients}\n"
        f"{_render_ssl(spec)}"
        f"{_render_auth(spec)}"
        "mail_location = maildir:~/Maildir\n"
        "# fsync buys nothing for a throwaway server and slows every delivery.\n"
        "mail_fsync = never\n"
        "namespace inbox {\n"
        "  inbox = yes\n"
        "  separator = /\n"
        "  mailbox Drafts {\n    special_use = \\Drafts\n  }\n"
        "  mailbox Sent {\n    special_use = \\Sent\n  }\n"
        "  mailbox Trash {\n    special_use = \\Trash\n  }\n"
        "  mailbox Junk {\n    special_use = \\Junk\n  }\n"
        "}\n"
        f"mailbox_idle_check_interval = {MAILBOX_IDLE_CHECK_INTERVAL_S} secs\n"
        f"imap_idle_notify_interval = {spec.idle_notify_interval_s} secs\n"
        "protocol imap {\n"
        f"  mail_max_userip_connections = {limits.userip_connections}\n"
        "}\n"
        f"{_render_services(spec, limits)}"
    )
