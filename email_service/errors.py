"""The error tree of the service (core: no IO).

Every error we raise or translate a library's exception into is one of these::

    EmailServiceError
    ├── InvalidSettings          a setting is missing or malformed; the message names the
    │                            variable and the fix. Stops the program at start.
    ├── TransientError           worth retrying with backoff
    │   ├── ConnectionLost       IMAP connection refused, reset, timed out, half-open
    │   ├── HostUnresolvable     the IMAP host name does not resolve (typo, or DNS down)
    │   ├── ImapCommandFailed    the server answered NO or BAD to a command we expected to work
    │   ├── ServerThrottled      the server asked us to slow down (carries a hint in seconds)
    │   ├── PublishFailed        Redis unreachable or refused the write
    │   ├── StorageUnavailable   the database is unreachable
    │   └── TokenEndpointUnavailable  the OAuth token endpoint is down, slow, 5xx or 429
    └── PermanentError           retrying will not help until someone changes something
        ├── AuthenticationFailed the server rejected the credentials
        ├── TlsVerificationFailed the certificate did not verify (wrong host, unknown CA)
        ├── HostRefused          a tenant's host resolves to an address the server-side
        │                        request forgery guard refuses (private, loopback...)
        ├── FolderMissing        the configured folder does not exist
        ├── SecretUndecryptable  no key in EMAIL_SERVICE_SECRET_KEYS opens the secret
        ├── LeaseLost            another worker owns the provider now (fencing check failed)
        ├── MessageUnparseable   a message cannot be turned into an event (goes to the DLQ)
        │   ├── EventTooLarge    its event exceeds EMAIL_SERVICE_MAX_EVENT_BYTES even shrunk
        │   └── NoUsableSender   no From, Sender, Reply-To or Return-Path address the
        │                        consumer accepts
        ├── TenantIdInvalid      a tenant id is not a UUID (the consumer refuses its events)
        ├── ReplayImpossible     a dead letter's message cannot be had again (UIDVALIDITY
        │                        changed, expunged, provider removed)
        ├── ProviderNotFound     no such provider for this tenant
        ├── ProviderLimitReached the tenant has EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT already
        ├── StorageConflict      a write broke a constraint (a duplicate, a missing parent)
        ├── ReauthorizationRequired  the OAuth grant is revoked: the provider is parked
        ├── OAuthRequestRejected the token endpoint refused for another reason
        └── OAuthStateInvalid    a connect callback's state is forged, expired or replayed

Third-party exceptions are translated into these at the one module that owns the library
(imapclient in ``imap_session``, redis in ``publisher``, sqlalchemy in ``storage``,
cryptography in ``secretbox``, authlib in ``oauth.client``), with ``raise ... from exc``.
"""

from __future__ import annotations


class EmailServiceError(Exception):
    """Base of every error the service raises on purpose."""


class InvalidSettings(EmailServiceError):
    """A setting is missing or malformed. The message names the variable and the fix."""


class TransientError(EmailServiceError):
    """A failure that a retry with backoff may cure."""


class ConnectionLost(TransientError):
    """The IMAP connection failed, dropped, or stopped answering."""


class HostUnresolvable(TransientError):
    """The host name did not resolve; transient because DNS outages pass, but shown as-is."""


class ImapCommandFailed(TransientError):
    """The server refused a command that should have worked."""


class ServerThrottled(TransientError):
    """The server asked us to back off; ``retry_after_s`` is its hint when it gave one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PublishFailed(TransientError):
    """Redis could not take the events."""


class StorageUnavailable(TransientError):
    """The database could not be reached or the statement failed for a passing reason."""


class PermanentError(EmailServiceError):
    """A failure that needs a change (credentials, configuration) before a retry helps."""


class AuthenticationFailed(PermanentError):
    """The IMAP server rejected the login."""


class TlsVerificationFailed(PermanentError):
    """The server's certificate did not verify against the trusted CAs for its host name."""


class HostRefused(PermanentError):
    """A tenant's host (IMAP server, token endpoint) resolves to an address the server-side
    request forgery guard refuses; the message says what kind, never which address."""


class FolderMissing(PermanentError):
    """The configured folder does not exist on the server."""


class SecretUndecryptable(PermanentError):
    """None of the configured keys decrypts the stored secret."""


class LeaseLost(PermanentError):
    """The fencing value no longer matches: another worker owns this provider."""


class MessageUnparseable(PermanentError):
    """A message cannot be turned into an event; it goes to the dead-letter stream."""


class EventTooLarge(MessageUnparseable):
    """Even with everything optional left out, the event exceeds the entry bound."""


class NoUsableSender(MessageUnparseable):
    """No sender address of the message fits the consumer's e-mail format."""


class TenantIdInvalid(PermanentError):
    """A tenant id is not a UUID; the message says so and why it matters."""


class ReplayImpossible(PermanentError):
    """A dead letter's message cannot be fetched again (UIDVALIDITY changed, expunged...)."""


class ProviderNotFound(PermanentError):
    """No provider with that id exists for the tenant."""


class ProviderLimitReached(PermanentError):
    """The tenant already has as many providers as EMAIL_SERVICE_MAX_PROVIDERS_PER_TENANT."""


class StorageConflict(PermanentError):
    """A database write broke a constraint."""


class ReauthorizationRequired(PermanentError):
    """The OAuth grant was revoked or the client rejected: a person must connect again."""


class OAuthRequestRejected(PermanentError):
    """The token endpoint refused a request for a reason other than a revoked grant."""


class OAuthStateInvalid(PermanentError):
    """The ``state`` of a connect callback is malformed, forged, expired or used already.

    ``reason`` is a short code for the API's error body.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TokenEndpointUnavailable(TransientError):
    """The OAuth token endpoint could not be reached, timed out, or answered 5xx or 429."""
