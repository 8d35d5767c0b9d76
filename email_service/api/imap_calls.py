"""The API's calls that reach a mail server: resolve and guard the host, then test, list
folders or read folder STATUS, each within ``EMAIL_SERVICE_API_IMAP_TIMEOUT_MS`` (shell).

imapclient blocks, so each call runs on a thread of a small pool of its own (the database
calls use asyncio's default pool, so slow mail servers cannot starve them). One tenant may
have at most ``CALLS_PER_TENANT_AT_ONCE`` calls running (a 429 beyond), fewer than the
pool's threads, so one tenant's slow or huge calls always leave threads for the others.
A folder listing reads at most ``MAX_LISTED_FOLDERS`` folders and ``MAX_LIST_BYTES`` of
the server's answer, then cuts the connection: a server listing two million folders costs
a bounded amount of memory and time, and the answer says it is ``truncated``. The host is
resolved and checked by ``security.ssrf.decide_host`` right before connecting, every time: a name
that was public when the provider was saved may point somewhere else now. (The connection
itself checks again and connects to the address it checked: ``security.outbound.HostGuard``.) On
timeout the connection is cut from the event loop's side
with ``ImapSession.interrupt``, so the thread ends at once instead of at its socket timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from email_service.api.problems import ApiProblem
from email_service.api.views import (
    FolderListing,
    FolderListings,
    LiveCheck,
    ProbeOutcome,
    ServerFolderStatus,
    failure_stage,
)
from email_service.errors import EmailServiceError, FolderMissing
from email_service.imap.session import ConnectOptions, FolderList, ImapSession, Login
from email_service.model import ProviderConfig
from email_service.security.ssrf import decide_host
from email_service.settings import ApiSettings, ImapSettings
from email_service.sync.budget import INBOX, rank_folders

T = TypeVar("T")

#: Threads for API calls that hold an IMAP connection. Each tenant is rate limited, so this
#: only bounds how many such calls run at once across tenants; the rest wait their turn.
IMAP_THREADS = 8
#: Calls one tenant may have running at once: a test and a folder listing side by side (the
#: UI's flow), and at most a quarter of the pool, so four busy tenants still leave room.
CALLS_PER_TENANT_AT_ONCE = 2
#: Folders a listing returns at most: far more than a person picks from (a large shared
#: Exchange mailbox has a few thousand), little memory (a few MB per call).
MAX_LISTED_FOLDERS = 10_000
#: Bytes of a LIST answer read at most: 10,000 entries of about 200 bytes.
MAX_LIST_BYTES = 2 * 1024 * 1024

#: Socket timeouts of a call run this much past its deadline, so the deadline is what ends it.
DEADLINE_MARGIN_S = 1.0

#: Resolves a host name to its addresses (text form); empty when it does not resolve.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, by the system resolver (``getaddrinfo``)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


class SessionHolder:
    """Lets the event loop cut a connection that a pool thread is blocked on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: ImapSession | None = None
        self._cancelled = False

    def attach(self, session: ImapSession) -> None:
        with self._lock:
            self._session = session
            cancelled = self._cancelled
        if cancelled:
            session.interrupt()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            session = self._session
        if session is not None:
            session.interrupt()


@dataclass(frozen=True)
class _Deadline:
    at: float

    def remaining_s(self) -> float:
        return max(self.at - time.monotonic(), 0.0)


class ImapCalls:
    """Host checks and short-lived IMAP sessions for the API."""

    def __init__(
        self, api: ApiSettings, imap: ImapSettings, resolver: Resolver = resolve_addresses
    ) -> None:
        self._imap = imap
        self._resolver = resolver
        self._pool = ThreadPoolExecutor(IMAP_THREADS, thread_name_prefix="api-imap")
        self.timeout_s = api.imap_timeout_s
        #: Calls running (or still on a pool thread after their deadline), per tenant.
        self._running: dict[str, int] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def refusal_for_host(
        self, host: str, port: int, timeout_s: float | None = None
    ) -> str | None:
        """Why ``host`` may not be used (does not resolve, private address...), or None."""
        try:
            addresses = await asyncio.wait_for(
                self._resolver(host, port), timeout_s if timeout_s is not None else self.timeout_s
            )
        except TimeoutError:
            return "did not resolve in time; check the name"
        return decide_host(addresses, allow_private=self._imap.allow_private_hosts)

    async def probe(self, provider: ProviderConfig, login: Login) -> ProbeOutcome:
        """Connect, log in, read capabilities and folders: the ``test`` call."""
        with self._slot(provider.tenant) as slot:
            return await self._probe_in(slot, provider, login)

    async def _probe_in(self, slot: _Slot, provider: ProviderConfig, login: Login) -> ProbeOutcome:
        started = time.monotonic()
        deadline = _Deadline(started + self.timeout_s)
        refusal = await self.refusal_for_host(
            provider.endpoint.host, provider.endpoint.port, deadline.remaining_s()
        )
        if refusal is not None:
            return ProbeOutcome(
                ok=False,
                stage="resolve",
                error=f"host {refusal}",
                capabilities=(),
                folders_found=(),
                missing_folders=(),
                elapsed_ms=_elapsed_ms(started),
            )
        try:
            return await self._run(
                slot, deadline, lambda holder: self._probe(provider, login, holder, started)
            )
        except TimeoutError:
            return ProbeOutcome(
                ok=False,
                stage="timeout",
                error=f"the server did not answer within {self.timeout_s:g} s",
                capabilities=(),
                folders_found=(),
                missing_folders=(),
                elapsed_ms=_elapsed_ms(started),
            )

    async def list_folders(self, provider: ProviderConfig, login: Login) -> FolderListings:
        """The server's folders (bounded); ``ApiProblem`` 422 (host refused), 429 (this
        tenant's calls are all running), 502 (failed), 504 (slow)."""
        with self._slot(provider.tenant) as slot:
            deadline = _Deadline(time.monotonic() + self.timeout_s)
            await self.require_allowed_host(provider, deadline.remaining_s())
            try:
                return await self._run(
                    slot, deadline, lambda holder: self._list(provider, login, holder)
                )
            except TimeoutError:
                raise self.timeout_problem() from None
            except EmailServiceError as exc:
                raise ApiProblem(502, "imap_failed", str(exc)) from None

    async def check_folders(self, provider: ProviderConfig, login: Login) -> LiveCheck:
        """STATUS of each configured folder, for the live status; failures go in ``error``."""
        with self._slot(provider.tenant) as slot:
            return await self._check_in(slot, provider, login)

    async def _check_in(self, slot: _Slot, provider: ProviderConfig, login: Login) -> LiveCheck:
        deadline = _Deadline(time.monotonic() + self.timeout_s)
        now = datetime.now(UTC)
        refusal = await self.refusal_for_host(
            provider.endpoint.host, provider.endpoint.port, deadline.remaining_s()
        )
        if refusal is not None:
            return LiveCheck(checked_at=now, folders={}, error=f"host {refusal}")
        try:
            statuses = await self._run(
                slot, deadline, lambda holder: self._statuses(provider, login, holder)
            )
        except TimeoutError:
            return LiveCheck(now, {}, f"the server did not answer within {self.timeout_s:g} s")
        except EmailServiceError as exc:
            return LiveCheck(now, {}, str(exc))
        return LiveCheck(now, statuses, None)

    # -- helpers ----------------------------------------------------------------------------

    @contextmanager
    def _slot(self, tenant: str) -> Iterator[_Slot]:
        """One of the tenant's ``CALLS_PER_TENANT_AT_ONCE``, or ``ApiProblem`` 429.

        Released when the call ends, or, once its work is on a pool thread, when that work
        ends (after a timeout the thread may take a moment longer to notice the cut).
        """
        running = self._running.get(tenant, 0)
        if running >= CALLS_PER_TENANT_AT_ONCE:
            raise ApiProblem(
                429,
                "rate_limited",
                f"this tenant already has {running} calls to mail servers running, the most "
                "allowed at once; retry when one has finished",
                headers={"Retry-After": "1"},
            )
        self._running[tenant] = running + 1
        slot = _Slot(lambda: self._release(tenant))
        try:
            yield slot
        finally:
            slot.end_of_call()

    def _release(self, tenant: str) -> None:
        left = self._running.get(tenant, 1) - 1
        if left > 0:
            self._running[tenant] = left
        else:
            self._running.pop(tenant, None)

    async def _run(self, slot: _Slot, deadline: _Deadline, work: Callable[[SessionHolder], T]) -> T:
        holder = SessionHolder()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, work, holder)
        slot.hold_until(future)
        try:
            return await asyncio.wait_for(future, deadline.remaining_s())
        except TimeoutError:
            holder.cancel()
            raise

    async def run_on_pool(
        self, holder: SessionHolder, work: Callable[[], T], timeout_s: float
    ) -> T:
        """``work`` on a pool thread within ``timeout_s``; past it, ``holder``'s session is
        cut (the thread ends at once) and ``TimeoutError`` raised."""
        future = asyncio.get_running_loop().run_in_executor(self._pool, work)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            holder.cancel()
            raise

    async def require_allowed_host(self, provider: ProviderConfig, timeout_s: float) -> None:
        """``ApiProblem`` 422 when the provider's host may not be used now."""
        refusal = await self.refusal_for_host(
            provider.endpoint.host, provider.endpoint.port, timeout_s
        )
        if refusal is not None:
            raise ApiProblem(422, "host_refused", f"the provider's host {refusal}; change the host")

    def timeout_problem(self) -> ApiProblem:
        return ApiProblem(
            504, "imap_timeout", f"the mail server did not answer within {self.timeout_s:g} s"
        )

    def _options(self, provider: ProviderConfig) -> ConnectOptions:
        options = ConnectOptions.for_endpoint(provider.endpoint, self._imap)
        timeout_s = options.timeout_s
        if timeout_s >= self.timeout_s:
            # The call's deadline decides (504, stage timeout), not a socket timeout that
            # would end at nearly the same moment and answer 502 instead.
            timeout_s = self.timeout_s + DEADLINE_MARGIN_S
        return dataclasses.replace(options, timeout_s=timeout_s, keepalive=False)

    def open_session(
        self, provider: ProviderConfig, login: Login, holder: SessionHolder
    ) -> ImapSession:
        """Connect and log in (blocking: on a pool thread), attached to ``holder``."""
        session = ImapSession.open(provider.endpoint, login, self._options(provider))
        holder.attach(session)
        return session

    def _probe(
        self, provider: ProviderConfig, login: Login, holder: SessionHolder, started: float
    ) -> ProbeOutcome:
        try:
            session = self.open_session(provider, login, holder)
        except EmailServiceError as exc:
            return ProbeOutcome(
                False, failure_stage(exc), str(exc), (), (), (), _elapsed_ms(started)
            )
        try:
            capabilities = session.capabilities
            listing = _bounded_list(session)
            names = tuple(folder.name for folder in listing.folders)
            missing = missing_folders(provider.folders, names)
            if listing.truncated and missing:  # the configured ones may be past the bound
                session = self.open_session(provider, login, holder)
                missing = tuple(f for f in missing if not _exists(session, f))
        except EmailServiceError as exc:
            return ProbeOutcome(
                False, "folders", str(exc), session.capabilities, (), (), _elapsed_ms(started)
            )
        finally:
            session.close()
        return ProbeOutcome(
            ok=not missing,
            stage="folders" if missing else "done",
            error=("configured folders missing on the server: " + ", ".join(missing))
            if missing
            else None,
            capabilities=capabilities,
            folders_found=names,
            missing_folders=missing,
            elapsed_ms=_elapsed_ms(started),
            folders_truncated=listing.truncated,
        )

    def _list(
        self, provider: ProviderConfig, login: Login, holder: SessionHolder
    ) -> FolderListings:
        session = self.open_session(provider, login, holder)
        try:
            listing = _bounded_list(session)
        finally:
            session.close()
        return FolderListings(
            tuple(FolderListing(f.name, f.delimiter, f.flags) for f in listing.folders),
            truncated=listing.truncated,
            limit=MAX_LISTED_FOLDERS,
        )

    def _statuses(
        self, provider: ProviderConfig, login: Login, holder: SessionHolder
    ) -> dict[str, ServerFolderStatus]:
        session = self.open_session(provider, login, holder)
        found = {}
        try:
            for folder in rank_folders(provider.folders):
                try:
                    status = session.status(folder)
                except FolderMissing:
                    continue
                found[folder] = ServerFolderStatus(
                    uid_validity=status.uid_validity,
                    uid_next=status.uid_next,
                    messages=status.exists,
                )
        finally:
            session.close()
        return found


class _Slot:
    """A tenant's running-call slot; released once by whoever ends last: the call, or the
    pool thread its work is on."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self._future: asyncio.Future[Any] | None = None

    def hold_until(self, future: asyncio.Future[Any]) -> None:
        self._future = future

    def end_of_call(self) -> None:
        future = self._future
        if future is None or future.done():
            self._release()
        else:
            future.add_done_callback(lambda _f: self._release())


def _bounded_list(session: ImapSession) -> FolderList:
    return session.list_folders_bounded(max_folders=MAX_LISTED_FOLDERS, max_bytes=MAX_LIST_BYTES)


def _exists(session: ImapSession, folder: str) -> bool:
    try:
        session.status(folder)
    except FolderMissing:
        return False
    return True


def missing_folders(configured: tuple[str, ...], found: tuple[str, ...]) -> tuple[str, ...]:
    """Configured folders the server does not list (INBOX matched in any case, RFC 3501)."""
    present = set(found) | ({INBOX} if any(n.upper() == INBOX for n in found) else set())
    return tuple(
        folder
        for folder in configured
        if folder not in present and not (folder.upper() == INBOX and INBOX in present)
    )


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
