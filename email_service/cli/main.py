"""The ``email-service`` command line (shell): parses arguments, builds settings, dispatches.

This is the one place that reads ``os.environ``; everything below gets ``Settings``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from email_service.api.oauth_flows import OAuthFlowStore
from email_service.cli import demo, tail
from email_service.cli import dlq as cli_dlq
from email_service.cli import provider as cli_provider
from email_service.contract.formats import tenant_id_problem
from email_service.errors import EmailServiceError, InvalidSettings
from email_service.logs import configure_logging
from email_service.publish.publisher import connect_redis
from email_service.security.secretbox import SecretBox, generate_key
from email_service.settings import Settings
from email_service.store.engine import make_engine
from email_service.store.migrate import upgrade_database
from email_service.store.providers import ProviderStore
from email_service.store.secrets import SecretStore

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="email-service",
        description="Inbound email worker: IMAP IDLE listeners publishing events to Redis.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("migrate", help="create or upgrade the database schema")

    worker = commands.add_parser("worker", help="run the folder listeners")
    worker.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="port of /health, /ready, /metrics (default EMAIL_SERVICE_HTTP_PORT)",
    )

    api = commands.add_parser(
        "api", help="serve the provider API for the tenant UI, with /health, /ready, /metrics"
    )
    api.add_argument(
        "--port", type=int, default=None, help="port to listen on (default EMAIL_SERVICE_API_PORT)"
    )
    token = commands.add_parser(
        "api-token",
        help="print an HS256 API token for a tenant, signed with EMAIL_SERVICE_API_JWT_SECRET "
        "(for development and curl)",
    )
    token.add_argument(
        "--tenant", required=True, type=cli_provider.tenant_id_arg, help="tenant id (a UUID)"
    )
    token.add_argument("--ttl-s", type=int, default=3600, help="lifetime in seconds (3600)")

    commands.add_parser(
        "check",
        help="report stored rows the product's consumer would refuse (tenant ids that are not "
        "UUIDs); exits 1 when there are any",
    )
    keys = commands.add_parser("keys", help="secret keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    keys.add_parser("generate", help="print a new key for EMAIL_SERVICE_SECRET_KEYS")
    keys.add_parser("rotate", help="re-encrypt every stored secret with the first key")

    cli_provider.add_commands(commands)
    tail.add_command(commands)
    cli_dlq.add_command(commands)
    demo.add_command(commands)
    return parser


def run(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env(environ, default_worker_id=f"{os.uname().nodename}-{os.getpid()}")
    quiet = args.command in {"provider", "events", "keys", "api-token", "dlq", "check"} or (
        args.command == "demo" and "EMAIL_SERVICE_LOG_LEVEL" not in environ
    )
    configure_logging(
        log_format=settings.process.log_format,
        level="warning" if quiet else settings.process.log_level,
    )
    match args.command:
        case "migrate":
            upgrade_database(settings.store.database_url)
            print("database schema is up to date")
            return 0
        case "worker":
            from email_service.worker.process import run_worker

            upgrade_database(settings.store.database_url)
            run_worker(
                settings,
                http_port=args.http_port
                if args.http_port is not None
                else settings.process.http_port,
            )
            return 0
        case "api":
            from email_service.api.parts import ApiParts
            from email_service.api.server import run_api

            parts = ApiParts.build(settings)  # settings errors first, before touching the database
            upgrade_database(settings.store.database_url)
            run_api(parts, port=args.port if args.port is not None else settings.api.port)
            return 0
        case "api-token":
            from email_service.api.auth import sign_token

            print(sign_token(settings, args.tenant, ttl_s=args.ttl_s))
            return 0
        case "keys":
            if args.keys_command == "generate":
                print(generate_key())
                return 0
            return rotate_keys(settings)
        case "check":
            return _check(settings)
        case "provider":
            return cli_provider.run(args, settings, environ)
        case "events":
            return tail.run(args, settings)
        case "dlq":
            return cli_dlq.run(args, settings)
        case "demo":
            return demo.run(args, settings, environ)
    raise AssertionError(args.command)  # pragma: no cover


def rotate_keys(settings: Settings) -> int:
    """Re-encrypt every stored secret, then every pending OAuth connect flow, with the first
    key of ``EMAIL_SERVICE_SECRET_KEYS``; after this the other keys can be removed."""
    box = SecretBox(settings.require_secret_keys())
    engine = make_engine(settings.store.database_url)
    try:
        count = SecretStore(engine, box).reencrypt_all()
    finally:
        engine.dispose()
    print(f"re-encrypted {count} secrets with the first key")
    if settings.streams.redis_url is None:
        print("REDIS_URL is not set: pending OAuth connect flows were not re-encrypted")
        return 0
    client = connect_redis(settings.streams.redis_url)
    try:
        resealed, unreadable = OAuthFlowStore(client, box).reencrypt_all()
    finally:
        client.close()
    print(f"re-encrypted {resealed} pending OAuth connect flows with the first key")
    if unreadable:
        print(
            f"{unreadable} pending OAuth connect flows open with no configured key: their "
            "callbacks will be refused; the users start those flows again"
        )
    return 0


def _check(settings: Settings) -> int:
    providers = ProviderStore(make_engine(settings.store.database_url)).list_providers()
    refused = [p for p in providers if tenant_id_problem(p.tenant) is not None]
    for provider in refused:
        print(
            f"provider {provider.id}: tenant {provider.tenant[:80]!r} is not a UUID; the worker "
            "does not monitor it (its events would be dropped by the consumer). Move the "
            "provider to the tenant's UUID."
        )
    print(f"{len(providers)} providers checked, {len(refused)} with a tenant id that is not a UUID")
    return 1 if refused else 0


def main() -> None:
    try:
        code = run(sys.argv[1:], os.environ)
    except InvalidSettings as exc:
        print(f"email-service: configuration error: {exc}", file=sys.stderr)
        code = 2
    except EmailServiceError as exc:
        print(f"email-service: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
