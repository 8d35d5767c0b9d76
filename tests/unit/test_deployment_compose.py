"""docker/greenmail/: the compose file gives the service every setting, and the test-mail
script delivers over SMTP (to a minimal SMTP server in the test: no Docker here)."""

from __future__ import annotations

import importlib.util
import socketserver
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from types import ModuleType
from typing import Any

import pytest

from email_service.settings import Settings
from tests.deployment import COMPOSE_FILE, ROOT, describe_difference, load_yaml, setting_names

SEND_SCRIPT = ROOT / "docker" / "greenmail" / "send_test_mail.py"


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE_FILE)["services"]
    return services


@pytest.mark.parametrize("service", ["migrate", "worker", "api"])
def test_service_gets_every_setting_and_nothing_unknown(service: str) -> None:
    environment = compose_services()[service]["environment"]
    expected = setting_names(secret=False) | setting_names(secret=True)
    assert set(environment) == expected, describe_difference(set(environment), expected)
    assert all(isinstance(value, str) for value in environment.values()), (
        "compose wants quoted strings for environment values"
    )
    settings = Settings.from_env(environment)
    assert settings.require_redis_url() == "redis://redis:6379/0"
    assert settings.store.database_url.startswith(
        "postgresql+psycopg://postgres:postgres@postgres:"
    )


def test_service_roles_are_built_from_the_repository_dockerfile() -> None:
    services = compose_services()
    for role in ("migrate", "worker", "api"):
        build = services[role]["build"]
        assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve() == (
            ROOT / "Dockerfile"
        )
        assert services[role]["command"] == ["email-service", role]
    worker_needs = services["worker"]["depends_on"]
    assert worker_needs["migrate"]["condition"] == "service_completed_successfully"
    greenmail_ports = {p.split(":")[0] for p in services["greenmail"]["ports"]}
    assert greenmail_ports == {"3025", "3143", "3993"}
    assert {"redis", "postgres"} <= set(services)


class RecordingSmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: records each message's envelope and data."""

    received: list[tuple[str, list[str], bytes]]

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 test ESMTP")
        sender, recipients = "", []
        while line := self.rfile.readline():
            command = line.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb in {"EHLO", "HELO", "RSET", "NOOP"}:
                self.reply("250 ok")
            elif verb == "MAIL":
                sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                self.reply("250 ok")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip(" <>"))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go on")
                data = b"".join(iter(self.rfile.readline, b".\r\n"))
                self.received.append((sender, recipients, data))
                self.reply("250 queued")
            else:
                self.reply("221 bye")
                return


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[tuple[str, list[str], bytes]]]]:
    received: list[tuple[str, list[str], bytes]] = []
    handler = type("Handler", (RecordingSmtpHandler,), {"received": received})
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.server_address[1], received
        server.shutdown()
        thread.join(timeout=5)


def load_send_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("send_test_mail", SEND_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_send_test_mail_delivers_numbered_messages(
    smtp_server: tuple[int, list[tuple[str, list[str], bytes]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, received = smtp_server
    script = load_send_script()
    argv = ["--host", "127.0.0.1", "--port", str(port), "--count", "2", "--attachment"]
    assert script.main(argv) == 0
    assert "sent 2 message(s) to demo@localhost" in capsys.readouterr().out
    assert [(sender, recipients) for sender, recipients, _ in received] == [
        ("sender@example.com", ["demo@localhost"]),
        ("sender@example.com", ["demo@localhost"]),
    ]
    messages = [message_from_bytes(data, policy=policy.default) for _, _, data in received]
    assert [m["Subject"] for m in messages] == ["Test message 1", "Test message 2"]
    assert len({m["Message-ID"] for m in messages}) == 2
    assert [part.get_filename() for part in messages[0].iter_attachments()] == ["note.txt"]


def test_send_test_mail_says_what_to_do_when_nothing_listens(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as probe:
        port = probe.server_address[1]
    assert load_send_script().main(["--host", "127.0.0.1", "--port", str(port)]) == 1
    assert "Is GreenMail running" in capsys.readouterr().err
