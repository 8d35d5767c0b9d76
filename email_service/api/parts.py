"""Everything the API talks to, built once from settings (shell), and the request accessors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import Engine

from email_service.api.auth import Caller, TokenVerifier
from email_service.api.content_streams import ContentStreams
from email_service.api.imap_calls import ImapCalls, Resolver, resolve_addresses
from email_service.api.ratelimit import RateLimiter
from email_service.credentials.tokens import TokenManager
from email_service.imap.logins import LoginSource
from email_service.imap.session import warn_if_tls_unverified
from email_service.metrics import Metrics
from email_service.publish.publisher import connect_redis
from email_service.security.secretbox import SecretBox
from email_service.settings import Settings
from email_service.store.connection_records import ConnectionRecordStore
from email_service.store.engine import make_engine
from email_service.store.oauth_grants import OAuthGrantStore
from email_service.store.providers import ProviderStore
from email_service.store.secrets import SecretStore

if TYPE_CHECKING:
    import redis


@dataclass
class ApiParts:
    """Everything the API talks to, built once from settings (like ``WorkerParts``)."""

    settings: Settings
    engine: Engine
    providers: ProviderStore
    secrets: SecretStore
    redis_client: redis.Redis[bytes]
    metrics: Metrics
    verifier: TokenVerifier
    imap: ImapCalls
    limiter: RateLimiter
    #: Message and part downloads: their own rate limit, admission and streaming.
    download_limiter: RateLimiter
    content: ContentStreams
    #: Seals what the API keeps outside the database (the OAuth connect flow in Redis).
    box: SecretBox
    #: Logins for the calls that reach a mail server (passwords, OAuth access tokens).
    logins: LoginSource

    @classmethod
    def build(cls, settings: Settings, *, resolver: Resolver = resolve_addresses) -> ApiParts:
        """Build from settings; ``InvalidSettings`` names what is missing (JWT, keys, Redis)."""
        warn_if_tls_unverified(settings.imap)
        verifier = TokenVerifier.from_settings(settings)
        box = SecretBox(settings.require_secret_keys())
        redis_client = connect_redis(settings.require_redis_url())
        engine = make_engine(settings.store.database_url)
        secrets = SecretStore(engine, box)
        metrics = Metrics()
        tokens = TokenManager(
            OAuthGrantStore(engine, secrets),
            secrets,
            settings.oauth,
            allow_private_hosts=settings.imap.allow_private_hosts,
            owner=f"api-{settings.process.worker_id}",
            metrics=metrics,
        )
        imap = ImapCalls(settings.api, settings.imap, resolver)
        return cls(
            settings=settings,
            engine=engine,
            providers=ProviderStore(engine),
            secrets=secrets,
            redis_client=redis_client,
            metrics=metrics,
            verifier=verifier,
            imap=imap,
            limiter=RateLimiter(
                capacity=settings.api.imap_calls_per_minute,
                per_minute=settings.api.imap_calls_per_minute,
            ),
            download_limiter=RateLimiter(
                capacity=settings.api.content_fetches_per_minute,
                per_minute=settings.api.content_fetches_per_minute,
            ),
            content=ContentStreams(imap, ConnectionRecordStore(engine), settings.imap),
            box=box,
            logins=LoginSource(settings.imap, secrets, tokens),
        )

    def close(self) -> None:
        self.imap.close()
        self.redis_client.close()
        self.engine.dispose()


PARTS = web.AppKey("parts", ApiParts)
#: Where the authenticated caller is kept on the request (``RequestKey`` since aiohttp 3.12).
CALLER_KEY: Any = (
    web.RequestKey("caller", Caller) if hasattr(web, "RequestKey") else "email_service.caller"
)


def parts_of(request: web.Request) -> ApiParts:
    return request.app[PARTS]


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller; the only source of the tenant a handler works for."""
    caller = request.get(CALLER_KEY)
    if not isinstance(caller, Caller):
        raise AssertionError("this route is not behind the authentication middleware")
    return caller
