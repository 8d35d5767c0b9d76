"""What the benchmarks share: servers, the worker process, providers, timing summaries."""

from __future__ import annotations

import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import imapclient
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from email_service.devserver.cyrus import start_cyrus  # noqa: E402
from email_service.devserver.dovecot import start_dovecot  # noqa: E402
from email_service.devserver.mailserver import MailServer  # noqa: E402
from email_service.model import ImapEndpoint, NewProvider, Security  # noqa: E402
from email_service.security.secretbox import SecretBox  # noqa: E402
from email_service.store.engine import make_engine  # noqa: E402
from email_service.store.migrate import upgrade_database  # noqa: E402
from email_service.store.provider_admin import ProviderAdmin, ProviderSecrets  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
#: Password of every Dovecot user the benchmarks create (throwaway servers).
PASSWORD = "pw"  # noqa: S105
#: Tenant of the benchmarks' single-tenant providers: tenant ids are UUIDs.
BENCH_TENANT = str(uuid.uuid5(uuid.NAMESPACE_URL, "email-service/bench"))
#: Folders per Dovecot user (INBOX and four more), so one user fills the default per-account
#: budget of five IDLE connections.
FOLDERS_PER_USER = 5


#: The real IMAP servers a measurement can run against (``--server``).
SERVERS = ("dovecot", "cyrus")
#: An IDLE response announcing a new message.
EXISTS_LINE = re.compile(rb"^\* \d+ EXISTS$", re.IGNORECASE)


def start_server(kind: str, workdir: Path, users: list[tuple[str, str]]) -> MailServer:
    """A throwaway Dovecot or Cyrus in ``workdir/<kind>`` with ``users``."""
    if kind == "cyrus":
        return start_cyrus(workdir / "cyrus", users=users)
    if kind == "dovecot":
        return start_dovecot(workdir / "dovecot", users=users)
    raise ValueError(f"unknown server {kind!r}; choose from {', '.join(SERVERS)}")


def bare_client(server: MailServer, user: str) -> imapclient.IMAPClient:
    """A bare imapclient connection over TLS, logged in, with ``TCP_NODELAY`` (the limit of
    the machine: without it, every command waits for Nagle's algorithm on some servers)."""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    client = imapclient.IMAPClient("localhost", port=server.imaps_port, ssl_context=context)
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.login(user, PASSWORD)
    return client


def wait_for_exists(client: imapclient.IMAPClient, timeout_s: float) -> None:
    """In IDLE: read the server's responses a whole line at a time until an EXISTS.

    imapclient's ``idle_check`` reads with the socket non-blocking and may stop in the
    middle of a line (``* 1 RE`` … ``CENT``), which leaves the rest for ``idle_done`` to
    choke on (``unterminated line``, ``unexpected response: b'CENT'``). Reading complete
    lines, blocking with a timeout, leaves nothing half-read behind.
    """
    sock = client.socket()
    previous = sock.gettimeout()
    sock.settimeout(timeout_s)
    try:
        while not EXISTS_LINE.match(client._imap._get_line()):
            pass
    finally:
        sock.settimeout(previous)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def folder_names() -> list[str]:
    return ["INBOX"] + [f"Queue{n}" for n in range(1, FOLDERS_PER_USER)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_inotify_limit() -> None:
    """Dovecot falls back to a 30 s stat poll beyond ~128 IDLE processes otherwise."""
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    if int(path.read_text()) < 8192:
        try:
            path.write_text("8192")
        except OSError as exc:
            print(
                f"warning: cannot raise {path} ({exc}); latencies beyond ~128 IDLE "
                "connections will show Dovecot's 30 s fallback poll",
                file=sys.stderr,
            )


def mixed_message(n: int) -> bytes:
    """Text and HTML of ~5 KB; every tenth also carries a 150 KB attachment (~23 KB on
    average, ~200 KB for the ones with an attachment once encoded)."""
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40 + "\n") * 2
    message = EmailMessage()
    message["From"], message["To"] = "alice@example.com", "support@example.com"
    message["Subject"] = f"backlog {n}"
    message["Message-ID"] = f"<backlog-{n}@bench>"
    message["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    message.set_content(body)
    if n % 2 == 0:
        message.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    if n % 10 == 0:
        message.add_attachment(
            os.urandom(150_000),
            maintype="application",
            subtype="octet-stream",
            filename=f"file-{n}.bin",
        )
    return bytes(message)


# -- Redis -------------------------------------------------------------------------------


def redis_client() -> redis.Redis[bytes]:
    return redis.Redis.from_url(REDIS_URL)


def wait_for_length(client: redis.Redis[bytes], stream: str, length: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while client.xlen(stream) < length:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {client.xlen(stream)} of {length} events on {stream}")
        time.sleep(0.002)


# -- PostgreSQL --------------------------------------------------------------------------


@contextmanager
def scratch_database() -> Iterator[str]:
    """A migrated PostgreSQL database for one measurement (SQLAlchemy URL), then dropped."""
    name = f"email_service_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        sa_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        sa_url += f"/{name}"
        upgrade_database(sa_url)
        yield sa_url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def plain_db_url(sa_url: str) -> str:
    return sa_url.replace("postgresql+psycopg://", "postgresql://", 1)


def add_providers(
    sa_url: str,
    key: str,
    dovecot: MailServer,
    users: list[str],
    *,
    folders: tuple[str, ...] = ("INBOX",),
    tenants: int = 20,
    tenant: str | None = None,
    plain: bool = False,
) -> list[str]:
    """One provider per Dovecot user (created here with its folders), over TLS (or on the
    plain port), spread over ``tenants`` tenants (or all of ``tenant``)."""
    engine = make_engine(sa_url)
    # The cap as high as this run needs: a bench run may put them all on one tenant.
    admin = ProviderAdmin.over(engine, SecretBox((key,)), max_providers_per_tenant=len(users))
    ids = []
    try:
        for n, user in enumerate(users):
            dovecot.add_user(user, PASSWORD)
            for folder in folders:
                if folder != "INBOX":
                    dovecot.create_folder(user, folder)
            owner = tenant or str(uuid.uuid5(uuid.NAMESPACE_URL, f"tenant-{n % tenants}"))
            endpoint = (
                ImapEndpoint("127.0.0.1", dovecot.imap_port, Security.NONE)
                if plain
                else ImapEndpoint(
                    "localhost", dovecot.imaps_port, Security.TLS, tls_ca_file=str(dovecot.ca_file)
                )
            )
            provider_id = admin.create(
                NewProvider(
                    tenant=owner,
                    name=user,
                    mailbox=f"{user}@localhost",
                    username=user,
                    folders=folders,
                    endpoint=endpoint,
                ),
                ProviderSecrets(password=PASSWORD),
            )
            ids.append(provider_id)
    finally:
        engine.dispose()
    return ids


# -- the worker process ------------------------------------------------------------------


def start_service(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``email-service <args>`` as a subprocess, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "email_service", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@dataclass
class WorkerProcess:
    """``email-service worker`` as a subprocess, with its /metrics port."""

    process: subprocess.Popen[bytes]
    port: int
    started: float

    @classmethod
    def start(cls, env: dict[str, str], log: Path) -> WorkerProcess:
        port = free_port()
        started = time.monotonic()
        process = start_service(["worker", "--http-port", str(port)], env, log)
        return cls(process, port, started)

    def alive(self) -> bool:
        return self.process.poll() is None

    def listeners(self, state: str) -> int:
        """Connections in ``state`` by the worker's own gauge (0 while it cannot answer)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/metrics", timeout=2
            ) as reply:
                text = reply.read().decode()
        except OSError:
            return 0
        prefix = f'email_service_listeners{{state="{state}"}}'
        for line in text.splitlines():
            if line.startswith(prefix):
                return int(float(line.split()[-1]))
        return 0

    def wait_for_idle(self, expected: int, timeout_s: float) -> float:
        """Seconds from process start until ``expected`` connections are in IDLE."""
        while self.listeners("idle") < expected:
            if not self.alive():
                raise RuntimeError("the worker exited")
            if time.monotonic() - self.started > timeout_s:
                raise RuntimeError(f"worker did not reach {expected} IDLE folders")
            time.sleep(0.05)
        return time.monotonic() - self.started

    def proc_status(self) -> dict[str, int]:
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "Threads"):
                fields[name] = int(value.split()[0])
        return fields

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def worker_env(database_url: str, key: str, stream: str, **extra: str) -> dict[str, str]:
    """A worker's environment; its mail servers are the bench's own, on localhost, which
    the SSRF guard refuses unless private hosts are allowed."""
    return {
        "IMAP_ALLOW_PRIVATE_HOSTS": "true",
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "EMAIL_SERVICE_SECRET_KEYS": key,
        "EMAIL_SERVICE_EVENT_STREAM": stream,
        "EMAIL_SERVICE_LOG_LEVEL": "warning",
        **extra,
    }
