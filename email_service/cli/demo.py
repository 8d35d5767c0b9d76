"""``email-service demo``: a local IMAP server, the worker, sample mail and its events (shell).

With no arguments it starts a throwaway Dovecot (installed from Debian's packages when
missing), a throwaway Redis unless ``REDIS_URL`` is set, and a SQLite database unless
``DATABASE_URL`` is set; creates a demo mailbox and provider; runs the worker in this
process; delivers sample messages and prints each event as it reaches the stream, with the
time it took. Ctrl-C stops everything and removes the temporary files.

``--imap-host`` points it at another server instead (GreenMail: ``--imap-port 3143
--security none --smtp-port 3025``); sample mail is then sent over SMTP.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import smtplib
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from email_service.cli.tail import describe_event
from email_service.devserver.dovecot import start_dovecot
from email_service.devserver.redis_server import start_redis
from email_service.devserver.samples import sample_messages
from email_service.model import ImapEndpoint, NewProvider, Security
from email_service.publish.publisher import last_stream_id, read_stream
from email_service.security.secretbox import generate_key
from email_service.settings import Settings
from email_service.store.migrate import upgrade_database
from email_service.store.provider_admin import ProviderAdmin, ProviderSecrets
from email_service.worker.process import Supervisor, WorkerParts

logger = logging.getLogger(__name__)

#: The demo's tenant: tenant ids are UUIDs (the product's consumer refuses any other), and
#: this one is uuid5 of a name, so every demo run uses the same.
DEMO_TENANT = "89f41ba3-661f-5c9a-9e3c-aaec1c53f030"
#: The demo mailbox on the throwaway Dovecot.
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - a throwaway local test account
#: Seconds between sample deliveries, so each event can be seen arriving on its own.
DELIVERY_GAP_S = 1.0
#: Seconds to wait for each sample's event before saying something is wrong.
EVENT_TIMEOUT_S = 15.0


def add_command(commands: Any) -> None:
    demo = commands.add_parser("demo", help="local IMAP server, worker and events, end to end")
    demo.add_argument(
        "--exit-after-samples",
        action="store_true",
        help="stop once the sample events arrived instead of waiting for Ctrl-C",
    )
    demo.add_argument("--imap-host", help="use this IMAP server instead of a local Dovecot")
    demo.add_argument("--imap-port", type=int, default=3143)
    demo.add_argument("--security", choices=[s.value for s in Security], default="none")
    demo.add_argument("--username", default="demo@localhost")
    demo.add_argument("--password", default="demo")
    demo.add_argument("--smtp-host", default=None, help="default: the IMAP host")
    demo.add_argument("--smtp-port", type=int, default=3025)


def say(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    with ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="email-service-demo-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        settings = _demo_settings(settings, environ, workdir, cleanup)
        upgrade_database(settings.store.database_url)
        parts = WorkerParts.build(settings)
        cleanup.callback(parts.engine.dispose)
        cleanup.callback(parts.listener_context.builder.close)

        if args.imap_host:
            endpoint = ImapEndpoint(args.imap_host, args.imap_port, Security(args.security))
            username, password, mailbox = args.username, args.password, args.username
            deliver = _smtp_delivery(args.smtp_host or args.imap_host, args.smtp_port, mailbox)
        else:
            say("==> starting a throwaway Dovecot IMAP server")
            dovecot = start_dovecot(workdir / "dovecot", users=[(DEMO_USER, DEMO_PASSWORD)])
            cleanup.callback(dovecot.stop)
            endpoint = ImapEndpoint(
                "localhost", dovecot.imaps_port, Security.TLS, tls_ca_file=str(dovecot.ca_file)
            )
            username, password, mailbox = DEMO_USER, DEMO_PASSWORD, f"{DEMO_USER}@support.example"

            def deliver(raw: bytes) -> None:
                dovecot.deliver(DEMO_USER, raw)

            say(
                f"    IMAP (TLS) on 127.0.0.1:{dovecot.imaps_port}, user {DEMO_USER} / "
                f"{DEMO_PASSWORD}; deliver more with LMTP on 127.0.0.1:{dovecot.lmtp_port}"
            )

        provider_id = ProviderAdmin.of(parts).create(
            NewProvider(
                tenant=DEMO_TENANT,
                name="Demo support mailbox",
                mailbox=mailbox,
                endpoint=endpoint,
                username=username,
            ),
            ProviderSecrets(password=password),
        )
        say(f"==> provider {provider_id} (tenant {DEMO_TENANT}) watches INBOX of {mailbox}")

        supervisor = Supervisor(parts)
        thread = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
        thread.start()

        def stop_worker() -> None:
            supervisor.stop_event.set()
            thread.join(30)

        cleanup.callback(stop_worker)
        _wait_until(
            lambda: any(lst.state == "idle" for lst in supervisor.listeners.values()),
            30,
            "the listener to reach IDLE (see the log lines above)",
        )
        say(f"==> worker is in IDLE; events go to Redis stream {settings.streams.event_stream}")
        return _deliver_and_show(parts, settings, deliver, mailbox, args.exit_after_samples)
    return 0


def _demo_settings(
    settings: Settings, environ: Mapping[str, str], workdir: Path, cleanup: ExitStack
) -> Settings:
    # The demo's mail server is on this machine (or the compose network): private hosts.
    store: dict[str, Any] = {}
    streams: dict[str, Any] = {}
    if "DATABASE_URL" not in environ:
        store["database_url"] = f"sqlite:///{workdir / 'email-service.db'}"
    if not settings.store.secret_keys:
        store["secret_keys"] = (generate_key(),)
    if settings.streams.redis_url is None:
        say("==> starting a throwaway Redis (set REDIS_URL to use your own)")
        redis_server = start_redis(workdir / "redis")
        cleanup.callback(redis_server.stop)
        streams["redis_url"] = redis_server.url
    return settings.with_changes(
        reconnect={"startup_stagger_s": 0},
        leases={"provider_refresh_s": 0.5},
        imap={"allow_private_hosts": True},
        store=store,
        streams=streams,
    )


def _smtp_delivery(host: str, port: int, mailbox: str) -> Callable[[bytes], None]:
    def deliver(raw: bytes) -> None:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.sendmail("demo-sender@example.com", [mailbox], raw)

    return deliver


def _deliver_and_show(
    parts: WorkerParts,
    settings: Settings,
    deliver: Callable[[bytes], None],
    mailbox: str,
    exit_after_samples: bool,
) -> int:
    client = parts.listener_context.publisher.client
    after = last_stream_id(client, settings.streams.event_stream)
    for number, raw in enumerate(sample_messages(mailbox), start=1):
        delivered_at = time.monotonic()
        deliver(raw)
        deadline = delivered_at + EVENT_TIMEOUT_S
        while True:
            entries = read_stream(
                client, settings.streams.event_stream, after_id=after, block_ms=200
            )
            if entries:
                for entry_id, fields in entries:
                    after = entry_id
                    latency = time.monotonic() - delivered_at
                    say(
                        f"[sample {number}, on the stream {latency:.2f}s after delivery] "
                        + describe_event(entry_id, fields)
                    )
                    if number == 2:
                        say(_render_full_event(fields))
                break
            if time.monotonic() > deadline:
                say(f"!! no event for sample {number} within {EVENT_TIMEOUT_S:g}s")
                return 1
        time.sleep(DELIVERY_GAP_S)
    if exit_after_samples:
        say("==> all sample events arrived; cleaning up")
        return 0
    say("==> waiting for more mail; Ctrl-C stops the demo and removes its files")
    while True:
        for entry_id, fields in read_stream(
            client, settings.streams.event_stream, after_id=after, block_ms=1000
        ):
            after = entry_id
            say(describe_event(entry_id, fields))


def _render_full_event(fields: Mapping[str, str]) -> str:
    """One event in full, as the workflow worker receives it (payload_json expanded)."""
    shown: dict[str, Any] = dict(fields)
    shown["payload_json"] = json.loads(fields["payload_json"])
    body = json.dumps(shown, indent=2, ensure_ascii=False)
    return "    the whole entry (payload_json expanded):\n" + "\n".join(
        "    " + line for line in body.splitlines()
    )


def _wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
