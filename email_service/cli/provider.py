"""``email-service provider add | add-oauth | list | remove | test | set-password`` (shell)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from email_service.contract.formats import tenant_id_problem
from email_service.errors import EmailServiceError, InvalidSettings
from email_service.imap.session import ConnectOptions, ImapSession, PasswordLogin
from email_service.model import (
    AUTH_OAUTH2,
    DEFAULT_FOLDERS,
    ImapEndpoint,
    NewProvider,
    OAuthFields,
    ProviderConfig,
    Security,
)
from email_service.security.secretbox import SecretBox
from email_service.settings import Settings
from email_service.store.engine import make_engine
from email_service.store.migrate import upgrade_database
from email_service.store.provider_admin import ProviderAdmin, ProviderSecrets
from email_service.store.providers import ProviderStore
from email_service.store.secrets import SecretStore
from providers.presets import APP_CREDENTIAL_TYPES, PROVIDER_TYPES, preset_for


def tenant_id_arg(value: str) -> str:
    """An argparse type: the value when it is a tenant id (a UUID), else a clear error."""
    problem = tenant_id_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def add_commands(commands: Any) -> None:
    provider = commands.add_parser("provider", help="manage mailbox providers")
    actions = provider.add_subparsers(dest="provider_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add an IMAP mailbox; prints the new provider id")
    add.add_argument("--tenant", required=True, type=tenant_id_arg, help="tenant id (a UUID)")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument("--mailbox", required=True, help="the mailbox address")
    add.add_argument("--host", required=True)
    add.add_argument("--port", required=True, type=int)
    add.add_argument("--security", required=True, choices=[s.value for s in Security])
    add.add_argument("--username", required=True)
    _password_arguments(add)
    add.add_argument(
        "--folders",
        default=",".join(DEFAULT_FOLDERS),
        help="comma-separated folders to monitor (default INBOX)",
    )
    add.add_argument("--tls-ca-file", default=None, help="CA certificate for a private CA")
    add.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="IMAP connections this account may use at once (default "
        "IMAP_MAX_CONNECTIONS_PER_ACCOUNT); folders beyond it are polled",
    )

    oauth = actions.add_parser(
        "add-oauth",
        help="add a mailbox that logs in with OAuth2 (Gmail, Microsoft 365, or any server); "
        "prints the id to connect through POST /api/email/oauth/imap/initiate",
    )
    oauth.add_argument("--tenant", required=True, type=tenant_id_arg, help="tenant id (a UUID)")
    oauth.add_argument("--name", required=True, help="display name")
    oauth.add_argument("--mailbox", required=True, help="the mailbox address (also the login)")
    oauth.add_argument("--type", required=True, choices=list(PROVIDER_TYPES), dest="kind")
    oauth.add_argument("--host", default=None, help="default: the preset's (Gmail, Microsoft)")
    oauth.add_argument("--port", type=int, default=None)
    oauth.add_argument("--security", choices=[s.value for s in Security], default="tls")
    oauth.add_argument("--client-id", default=None, help="default: the operator's app (settings)")
    oauth.add_argument(
        "--client-secret-env", metavar="VAR", default=None, help="read the client secret from VAR"
    )
    oauth.add_argument("--authorize-url", default=None, help="default: the preset's")
    oauth.add_argument("--token-url", default=None, help="default: the preset's")
    oauth.add_argument("--scopes", default=None, help="space separated; default: the preset's")
    oauth.add_argument("--folders", default=",".join(DEFAULT_FOLDERS))
    oauth.add_argument("--tls-ca-file", default=None, help="CA certificate for a private CA")

    actions.add_parser("list", help="list providers").add_argument("--tenant", default=None)
    remove = actions.add_parser("remove", help="delete a provider, its state and secrets")
    remove.add_argument("provider_id")
    test = actions.add_parser("test", help="connect, log in, list capabilities and folders")
    test.add_argument("provider_id")
    password = actions.add_parser("set-password", help="store a new password")
    password.add_argument("provider_id")
    _password_arguments(password)


def _password_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    source.add_argument(
        "--password-env", metavar="VAR", help="read the password from environment variable VAR"
    )


def _read_password(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidSettings("--password-stdin: no password was given on standard input")
        return password
    value = environ.get(args.password_env)
    if not value:
        raise InvalidSettings(f"--password-env {args.password_env}: that variable is not set")
    return value


def _parse_folders(text: str) -> tuple[str, ...]:
    folders = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    if not folders:
        raise InvalidSettings("--folders: give at least one folder, e.g. --folders INBOX")
    return folders


def run(args: argparse.Namespace, settings: Settings, environ: Mapping[str, str]) -> int:
    upgrade_database(settings.store.database_url)
    engine = make_engine(settings.store.database_url)
    providers = ProviderStore(engine)
    try:
        match args.provider_command:
            case "add":
                return _add(args, environ, _admin(engine, providers, settings))
            case "add-oauth":
                return _add_oauth(args, environ, _admin(engine, providers, settings))
            case "list":
                _print_table(providers.list_providers(args.tenant))
                return 0
            case "remove":
                provider = providers.find_provider(args.provider_id)
                _admin(engine, providers, settings).remove(provider.id, provider.tenant)
                print(f"removed provider {provider.id}")
                return 0
            case "test":
                provider = providers.find_provider(args.provider_id)
                return test_provider(provider, _secrets(engine, settings), settings)
            case "set-password":
                provider = providers.find_provider(args.provider_id)
                _admin(engine, providers, settings).set_secrets(
                    provider.id,
                    provider.tenant,
                    ProviderSecrets(password=_read_password(args, environ)),
                )
                print(f"password stored for provider {provider.id}")
                return 0
        raise AssertionError(args.provider_command)  # pragma: no cover
    finally:
        engine.dispose()


def _secrets(engine: Any, settings: Settings) -> SecretStore:
    return SecretStore(engine, SecretBox(settings.require_secret_keys()))


def _admin(engine: Any, providers: ProviderStore, settings: Settings) -> ProviderAdmin:
    return ProviderAdmin(
        engine,
        providers,
        _secrets(engine, settings),
        max_providers_per_tenant=settings.store.max_providers_per_tenant,
    )


def _add(args: argparse.Namespace, environ: Mapping[str, str], admin: ProviderAdmin) -> int:
    if not 1 <= args.port <= 65535:
        raise InvalidSettings("--port: expected a port number from 1 to 65535")
    if args.max_connections is not None and args.max_connections < 1:
        raise InvalidSettings("--max-connections: expected a whole number of at least 1")
    password = _read_password(args, environ)
    new = NewProvider(
        tenant=args.tenant,
        name=args.name,
        mailbox=args.mailbox,
        username=args.username,
        endpoint=ImapEndpoint(
            host=args.host,
            port=args.port,
            security=Security(args.security),
            tls_ca_file=args.tls_ca_file,
        ),
        folders=_parse_folders(args.folders),
        max_connections=args.max_connections,
    )
    provider_id = admin.create(new, ProviderSecrets(password=password))
    print(provider_id)
    return 0


def _add_oauth(args: argparse.Namespace, environ: Mapping[str, str], admin: ProviderAdmin) -> int:
    preset = preset_for(args.kind)
    host = args.host or preset.imap_host
    if host is None:
        raise InvalidSettings(f"--host: required for --type {args.kind} (no preset host)")
    if args.kind == "imap" and not (args.authorize_url and args.token_url and args.client_id):
        raise InvalidSettings(
            "--type imap: give --authorize-url, --token-url and --client-id of the server's "
            "OAuth2 authorization server"
        )
    client_secret = None
    if args.client_secret_env:
        client_secret = environ.get(args.client_secret_env)
        if not client_secret:
            raise InvalidSettings(f"--client-secret-env {args.client_secret_env}: not set")
    own_endpoint = args.authorize_url or args.token_url
    own_client = args.client_id and client_secret
    if args.kind in APP_CREDENTIAL_TYPES and own_endpoint and not own_client:
        raise InvalidSettings(
            f"--type {args.kind} with --authorize-url or --token-url: give --client-id and "
            "--client-secret-env too (the operator's app credentials go only to the preset's "
            "own endpoints)"
        )
    new = NewProvider(
        tenant=args.tenant,
        name=args.name,
        mailbox=args.mailbox,
        username=args.mailbox,
        endpoint=ImapEndpoint(
            host=host,
            port=args.port or preset.imap_port,
            security=Security(args.security),
            tls_ca_file=args.tls_ca_file,
        ),
        folders=_parse_folders(args.folders),
        provider_type=args.kind,
        auth_type=AUTH_OAUTH2,
        oauth=OAuthFields(
            authorize_url=args.authorize_url,
            token_url=args.token_url,
            client_id=args.client_id,
            scopes=tuple((args.scopes or "").split()),
        ),
    )
    provider_id = admin.create(new, ProviderSecrets(client_secret=client_secret))
    print(provider_id)
    print(
        "next: connect it with POST /api/email/oauth/imap/initiate "
        f'{{"providerId": "{provider_id}"}}',
        file=sys.stderr,
    )
    return 0


def test_provider(provider: ProviderConfig, secrets: SecretStore, settings: Settings) -> int:
    """Connect, log in, print capabilities and folders; say clearly what failed."""
    endpoint = provider.endpoint
    print(f"connecting to {endpoint.host}:{endpoint.port} ({endpoint.security.value}) ...")
    try:
        password = secrets.load_secret(provider.tenant, provider.password_secret_name())
        session = ImapSession.open(
            endpoint,
            PasswordLogin(provider.username, password),
            ConnectOptions.for_endpoint(endpoint, settings.imap),
        )
    except EmailServiceError as exc:
        print(f"FAILED: {exc}")
        return 1
    try:
        print(f"logged in as {provider.username}")
        print("capabilities: " + " ".join(session.capabilities))
        names = set()
        print("folders:")
        for folder in session.list_folders():
            names.add(folder.name)
            flags = " ".join(folder.flags)
            print(f"  {folder.name}{'  ' + flags if flags else ''}")
        missing = [f for f in provider.folders if f not in names]
        if missing:
            print("FAILED: configured folders missing on the server: " + ", ".join(missing))
            return 1
        print("OK: every configured folder exists: " + ", ".join(provider.folders))
        return 0
    except EmailServiceError as exc:
        print(f"FAILED: {exc}")
        return 1
    finally:
        session.close()


def _print_table(providers: list[ProviderConfig]) -> None:
    header = ("ID", "TENANT", "NAME", "MAILBOX", "SERVER", "SECURITY", "FOLDERS", "STATUS")
    rows = [header] + [
        (
            p.id,
            p.tenant,
            p.name,
            p.mailbox,
            f"{p.endpoint.host}:{p.endpoint.port}",
            p.endpoint.security.value,
            ",".join(p.folders),
            p.status + ("" if p.is_active else " (inactive)"),
        )
        for p in providers
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )
