"""The ``email-service`` processes the e2e tests start, and the CLI they run (helpers).

The tests start the worker and the API as a user would (``python -m email_service ...``)
and talk to them over HTTP; the processes, a free port and the CLI call live here so that
test modules import them from one helpers module, not from each other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from email_service.devserver.dovecot import DovecotServer
from email_service.model import ImapEndpoint, NewProvider, Security
from tests.conftest import MailUser
from tests.helpers import TENANT_A, add_provider, unique

#: The API's JWT secret in the e2e settings.
JWT_SECRET = "e2e-secret-for-api-tokens-0123456789abcdef"


def cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "email_service", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "email_service", "worker", "--http-port", str(self.port)],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return 0, {}

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(40)
        self.log.close()
        return code


class ApiProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "email_service", "api", "--port", str(self.port)],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def request(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http only
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return 0, None

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self.log.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def api_env(environ: dict[str, str], **extra: str) -> dict[str, str]:
    """The test settings plus the API's (its mail server is the local Dovecot)."""
    return {
        **environ,
        "EMAIL_SERVICE_API_JWT_SECRET": JWT_SECRET,
        "IMAP_ALLOW_PRIVATE_HOSTS": "true",
        **extra,
    }


def add_provider_with_cli(
    env: dict[str, str],
    *,
    port: int,
    security: str,
    username: str,
    password: str,
    ca_file: Path | None = None,
    host: str = "127.0.0.1",
) -> str:
    """Add a mailbox for ``TENANT_A`` with ``email-service provider add``; its id."""
    args = [
        "provider",
        "add",
        "--tenant",
        TENANT_A,
        "--name",
        "Support",
        "--mailbox",
        f"{username}@localhost",
        "--host",
        host,
        "--port",
        str(port),
        "--security",
        security,
        "--username",
        username,
        "--password-stdin",
    ]
    if ca_file is not None:
        args += ["--tls-ca-file", str(ca_file)]
    result = cli(*args, env=env, stdin=password + "\n")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def add_dovecot_provider(environ: dict[str, str], dovecot: DovecotServer, user: MailUser) -> str:
    """Add ``user``'s mailbox on ``dovecot`` (TLS, by name) with the CLI; its id."""
    return add_provider_with_cli(
        environ,
        host="localhost",
        port=dovecot.imaps_port,
        security="tls",
        username=user.name,
        password=user.password,
        ca_file=dovecot.ca_file,
    )


#: providers and tenants of a fleet test: enough for even shares among three workers
FLEET_PROVIDERS = 60
FLEET_TENANTS = 5


def add_providers(
    engine: Engine,
    environ: dict[str, str],
    dovecot: DovecotServer,
    tenants: list[str] | None = None,
    count: int = FLEET_PROVIDERS,
    tenant: str | None = None,
) -> list[str]:
    """``count`` providers on Dovecot users of their own, spread over ``tenants`` (``FLEET_TENANTS``
    by default) or all of the one ``tenant``; returns the users."""
    tenants = (
        [tenant]
        if tenant
        else tenants
        or [str(uuid.uuid5(uuid.NAMESPACE_URL, f"tenant-{n}")) for n in range(FLEET_TENANTS)]
    )
    users = []
    for n in range(count):
        user, password = unique("user"), unique("pw")
        dovecot.add_user(user, password)
        tenant_id = tenants[n % len(tenants)]
        add_provider(
            engine,
            environ["EMAIL_SERVICE_SECRET_KEYS"],
            NewProvider(
                tenant=tenant_id,
                name=f"mailbox {n}",
                mailbox=f"{user}@localhost",
                username=user,
                endpoint=ImapEndpoint(
                    "localhost", dovecot.imaps_port, Security.TLS, tls_ca_file=str(dovecot.ca_file)
                ),
            ),
            password=password,
        )
        users.append(user)
    return users
