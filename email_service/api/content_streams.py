"""A message, or one of its parts, streamed from the mailbox in bounded chunks (shell).

``ContentStreams.open`` admits a download, then on one of ``ImapCalls``' pool threads
connects (host resolved and checked right before, as every API call does), opens the
folder read-only (EXAMINE), checks that UIDVALIDITY is still the one asked for, and reads
the message's size and BODYSTRUCTURE. ``ContentStream.chunks`` then asks for
``CHUNK_BYTES`` at a time (``BODY.PEEK[<section>]<offset.CHUNK_BYTES>``: never marks it
seen), undoes the part's transfer encoding as it goes, and hands each piece on; the next
is fetched only once the client took the last, so memory per download stays at about two
chunks whatever the size, and a slow reader slows the fetching instead of filling memory.
The server may not answer a chunk with more than asked plus ``LITERAL_SLACK_BYTES``
(``ImapSession.cap_literals``).

Admission (``ApiProblem`` 429 with ``Retry-After``, 503 when the process is full):
- at most ``STREAMS_PER_TENANT`` downloads of one tenant at once, ``STREAMS_AT_ONCE`` in
  all on one API process;
- one more connection must fit the provider's connection budget (its ``maxConnections``, or
  the preset's and ``IMAP_MAX_CONNECTIONS_PER_ACCOUNT``) beside what the workers' leases
  record for it, and the tenant's ``IMAP_MAX_CONNECTIONS_PER_TENANT`` beside what they
  record for the tenant; downloads already running on this process count too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

from email_service.api.imap_calls import ImapCalls, SessionHolder
from email_service.api.message_parts import ServedPart, download_headers, find_part, whole_message
from email_service.api.problems import ApiProblem
from email_service.errors import EmailServiceError, FolderMissing
from email_service.imap.session import ImapSession, Login
from email_service.ingest.transfer import TransferDecoder
from email_service.model import ProviderConfig
from email_service.settings import ImapSettings
from email_service.store.connection_records import ConnectionRecordStore
from email_service.sync.budget import account_budget

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Octets asked for per FETCH: large enough that a 40 MB part takes 40 round trips, small
#: enough that 32 downloads at once hold about 64 MB.
CHUNK_BYTES = 1024 * 1024
#: Room beyond a chunk for the rest of a FETCH answer's literals (none is that large).
LITERAL_SLACK_BYTES = 64 * 1024
#: Downloads one API process serves at once (memory: about two chunks each).
STREAMS_AT_ONCE = 32
#: Downloads of one tenant at once on one process: a ticket's attachments side by side,
#: while other tenants keep most of the room.
STREAMS_PER_TENANT = 4
#: Seconds a client is asked to wait when no download may start now.
RETRY_AFTER_S = 2


@dataclass(frozen=True)
class MessageRef:
    """A message as events name it (``imap.folder``, ``imap.uidValidity``, ``imap.uid``)."""

    folder: str
    uid_validity: int
    uid: int


def not_found(code: str, message: str) -> ApiProblem:
    return ApiProblem(404, code, message)


@dataclass(frozen=True)
class OpenedMessage:
    """A session with the folder open, and what of the message to serve."""

    session: ImapSession
    holder: SessionHolder
    ref: MessageRef
    part: ServedPart


class ContentStream:
    """An admitted download: ``headers`` to send, then ``chunks``; always ``close``."""

    def __init__(
        self, streams: ContentStreams, opened: OpenedMessage, release: Callable[[], None]
    ) -> None:
        self._streams = streams
        self._session = opened.session
        self._holder = opened.holder
        self._ref = opened.ref
        self.part = part = opened.part
        self.headers = download_headers(part)
        self._release = release
        self.sent_bytes = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """The decoded bytes, a chunk at a time; ``EmailServiceError`` or ``TimeoutError``
        when the server fails or the message goes away midway."""
        decoder = TransferDecoder(self.part.encoding)
        offset = 0
        while True:
            got = await self._streams.on_pool(
                self._holder,
                functools.partial(
                    self._session.fetch_chunk, self._ref.uid, self.part.section, offset, CHUNK_BYTES
                ),
            )
            if got is None:
                raise FolderMissing("the message was removed from the mailbox while sent")
            offset += len(got)
            decoded = decoder.feed(got)
            if decoded:
                self.sent_bytes += len(decoded)
                yield decoded
            if len(got) != CHUNK_BYTES:
                break
        tail = decoder.finish()
        if tail:
            self.sent_bytes += len(tail)
            yield tail

    async def close(self) -> None:
        try:
            await self._streams.close_session(self._holder, self._session)
        finally:
            self._release()


class ContentStreams:
    """Admits downloads and opens them (see the module docstring)."""

    def __init__(
        self, calls: ImapCalls, records: ConnectionRecordStore, imap: ImapSettings
    ) -> None:
        self._imap = calls
        self._records = records
        self._limits = imap
        self._by_tenant: Counter[str] = Counter()
        self._by_provider: Counter[str] = Counter()

    @property
    def running(self) -> int:
        return sum(self._by_tenant.values())

    async def on_pool(self, holder: SessionHolder, work: Callable[[], T]) -> T:
        return await self._imap.run_on_pool(holder, work, self._imap.timeout_s)

    async def close_session(self, holder: SessionHolder, session: ImapSession) -> None:
        """Log out, or cut the connection when the server does not answer in time."""
        try:
            await self.on_pool(holder, session.close)
        except (TimeoutError, EmailServiceError):
            session.interrupt()

    async def open(
        self, provider: ProviderConfig, login: Login, ref: MessageRef, part_id: str | None
    ) -> ContentStream:
        """The download of the message (``part_id`` None) or one part; ``ApiProblem`` 404
        when the folder, UIDVALIDITY, message or part is not there any more."""
        self._check_room(provider)
        # Counted at once, before anything is awaited: downloads admitted side by side see
        # each other, so they cannot all slip into the same last place.
        self._by_tenant[provider.tenant] += 1
        self._by_provider[provider.id] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                _decrement(self._by_tenant, provider.tenant)
                _decrement(self._by_provider, provider.id)

        try:
            await self._check_budget(provider)
            await self._imap.require_allowed_host(provider, self._imap.timeout_s)
            holder = SessionHolder()
            session, part = await self._locate(provider, login, ref, part_id, holder)
        except BaseException:
            release()
            raise
        return ContentStream(self, OpenedMessage(session, holder, ref, part), release)

    def _check_room(self, provider: ProviderConfig) -> None:
        """This process's limits: downloads at once, in all and for the tenant."""
        tenant = provider.tenant
        if self.running >= STREAMS_AT_ONCE:
            raise ApiProblem(
                503,
                "busy",
                f"this API process is serving {STREAMS_AT_ONCE} downloads, the most at once; "
                "retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if self._by_tenant[tenant] >= STREAMS_PER_TENANT:
            raise self._limited(
                f"this tenant already has {STREAMS_PER_TENANT} downloads running, the most "
                "allowed at once; retry when one has finished"
            )

    async def _check_budget(self, provider: ProviderConfig) -> None:
        """The connection budgets, with this download already counted among this process's."""
        tenant = provider.tenant
        for_provider, for_tenant = await asyncio.to_thread(
            self._records.held_for, tenant, provider.id
        )
        budget = account_budget(provider, self._limits.max_connections_per_account)
        if for_provider + self._by_provider[provider.id] > budget:
            raise self._limited(
                f"the provider's {budget} connections are all in use (its folders and "
                "downloads); retry shortly, or raise maxConnections"
            )
        cap = self._limits.max_connections_per_tenant
        if for_tenant + self._by_tenant[tenant] > cap:
            raise self._limited(
                f"the tenant's {cap} connections (IMAP_MAX_CONNECTIONS_PER_TENANT) are all in "
                "use; retry shortly"
            )

    @staticmethod
    def _limited(message: str) -> ApiProblem:
        return ApiProblem(429, "rate_limited", message, headers={"Retry-After": str(RETRY_AFTER_S)})

    async def _locate(
        self,
        provider: ProviderConfig,
        login: Login,
        ref: MessageRef,
        part_id: str | None,
        holder: SessionHolder,
    ) -> tuple[ImapSession, ServedPart]:
        def locate() -> tuple[ImapSession, ServedPart | ApiProblem]:
            session = self._imap.open_session(provider, login, holder)
            try:
                session.cap_literals(CHUNK_BYTES + LITERAL_SLACK_BYTES)
                return session, _find(session, ref, part_id)
            except BaseException:
                session.close()
                raise

        try:
            session, found = await self.on_pool(holder, locate)
        except TimeoutError:
            raise self._imap.timeout_problem() from None
        except FolderMissing:
            raise not_found("folder_not_found", "the folder is not on the server") from None
        except EmailServiceError as exc:
            raise ApiProblem(502, "imap_failed", str(exc)) from None
        if isinstance(found, ApiProblem):
            await self.close_session(holder, session)
            raise found
        return session, found


def _find(session: ImapSession, ref: MessageRef, part_id: str | None) -> ServedPart | ApiProblem:
    """What to serve, or the 404 that says what is gone (blocking: on a pool thread)."""
    status = session.examine(ref.folder)
    if status.uid_validity != ref.uid_validity:
        return not_found(
            "uidvalidity_changed",
            f"the folder's UIDVALIDITY is now {status.uid_validity}: its messages were "
            "renumbered and this UID names no message of the event any more",
        )
    layout = session.fetch_structure(ref.uid)
    if layout is None:
        return not_found("message_not_found", "the message is not in the folder any more")
    if part_id is None:
        return whole_message(ref.uid)
    part = find_part(layout.structure, part_id)
    if part is None:
        return not_found("part_not_found", f"the message has no part {part_id}")
    return part


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
