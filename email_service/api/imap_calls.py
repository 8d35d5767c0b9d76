"""The API's calls that reach a mail server: resolve and guard the host, then test, list
folders or read folder STATUS, each within ``EMAIL_SERVICE_API_IMAP_TIMEOUT_MS`` (shell).

imapclient blocks, so each call runs on a thread of a small pool of its own (the database
calls use asyncio's default pool, so slow mail servers cannot starve them). The host is
resolved and checked by ``ssrf.decide_host`` right before connecting, every time: a name
that was public when the provider was saved may point somewhere else now. (The connection
itself resolves the name again, so a DNS answer that changes within those milliseconds is
not caught: see docs/api.md.) On timeout the connection is cut from the event loop's side
with ``ImapSession.interrupt``, so the thread ends at once instead of at its socket timeout.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from email_service.api.problems import ApiProblem
from email_service.api.ssrf import decide_host
from email_service.api.views import (
    FolderListing,
    LiveCheck,
    ProbeOutcome,
    ServerFolderStatus,
    failure_stage,
)
from email_service.budget import INBOX, rank_folders
from email_service.errors import EmailServiceError, FolderMissing
from email_service.imap_session import ConnectOptions, ImapSession, Login
from email_service.model import ProviderConfig
from email_service.settings import Settings

T = TypeVar("T")

#: Threads for API calls that hold an IMAP connection. Each tenant is rate limited, so this
#: only bounds how many such calls run at once across tenants; the rest wait their turn.
IMAP_THREADS = 8

#: Socket timeouts of a call run this much past its deadline, so the deadline is what ends it.
DEADLINE_MARGIN_MS = 1000

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


class _SessionHolder:
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

    def __init__(self, settings: Settings, resolver: Resolver = resolve_addresses) -> None:
        self._settings = settings
        self._resolver = resolver
        self._pool = ThreadPoolExecutor(IMAP_THREADS, thread_name_prefix="api-imap")
        self.timeout_s = settings.api_imap_timeout_ms / 1000

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
        return decide_host(addresses, allow_private=self._settings.allow_private_hosts)

    async def probe(self, provider: ProviderConfig, login: Login) -> ProbeOutcome:
        """Connect, log in, read capabilities and folders: the ``test`` call."""
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
                deadline, lambda holder: self._probe(provider, login, holder, started)
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

    async def list_folders(self, provider: ProviderConfig, login: Login) -> list[FolderListing]:
        """The server's folders; ``ApiProblem`` 422 (host refused), 502 (failed), 504 (slow)."""
        deadline = _Deadline(time.monotonic() + self.timeout_s)
        await self._require_allowed_host(provider, deadline)
        try:
            return await self._run(deadline, lambda holder: self._list(provider, login, holder))
        except TimeoutError:
            raise self._timeout() from None
        except EmailServiceError as exc:
            raise ApiProblem(502, "imap_failed", str(exc)) from None

    async def check_folders(self, provider: ProviderConfig, login: Login) -> LiveCheck:
        """STATUS of each configured folder, for the live status; failures go in ``error``."""
        deadline = _Deadline(time.monotonic() + self.timeout_s)
        now = datetime.now(UTC)
        refusal = await self.refusal_for_host(
            provider.endpoint.host, provider.endpoint.port, deadline.remaining_s()
        )
        if refusal is not None:
            return LiveCheck(checked_at=now, folders={}, error=f"host {refusal}")
        try:
            statuses = await self._run(
                deadline, lambda holder: self._statuses(provider, login, holder)
            )
        except TimeoutError:
            return LiveCheck(now, {}, f"the server did not answer within {self.timeout_s:g} s")
        except EmailServiceError as exc:
            return LiveCheck(now, {}, str(exc))
        return LiveCheck(now, statuses, None)

    # -- helpers ----------------------------------------------------------------------------

    async def _require_allowed_host(self, provider: ProviderConfig, deadline: _Deadline) -> None:
        refusal = await self.refusal_for_host(
            provider.endpoint.host, provider.endpoint.port, deadline.remaining_s()
        )
        if refusal is not None:
            raise ApiProblem(422, "host_refused", f"the provider's host {refusal}; change the host")

    def _timeout(self) -> ApiProblem:
        return ApiProblem(
            504, "imap_timeout", f"the mail server did not answer within {self.timeout_s:g} s"
        )

    async def _run(self, deadline: _Deadline, work: Callable[[_SessionHolder], T]) -> T:
        holder = _SessionHolder()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, work, holder)
        try:
            return await asyncio.wait_for(future, deadline.remaining_s())
        except TimeoutError:
            holder.cancel()
            raise

    def _options(self, provider: ProviderConfig) -> ConnectOptions:
        timeout_ms = provider.endpoint.timeout_ms or self._settings.connection_timeout_ms
        if timeout_ms >= self._settings.api_imap_timeout_ms:
            # The call's deadline decides (504, stage timeout), not a socket timeout that
            # would end at nearly the same moment and answer 502 instead.
            timeout_ms = self._settings.api_imap_timeout_ms + DEADLINE_MARGIN_MS
        return ConnectOptions(
            timeout_s=timeout_ms / 1000,
            keepalive=False,
            verify_tls=self._settings.tls_reject_unauthorized,
        )

    def _open(self, provider: ProviderConfig, login: Login, holder: _SessionHolder) -> ImapSession:
        session = ImapSession.open(provider.endpoint, login, self._options(provider))
        holder.attach(session)
        return session

    def _probe(
        self, provider: ProviderConfig, login: Login, holder: _SessionHolder, started: float
    ) -> ProbeOutcome:
        try:
            session = self._open(provider, login, holder)
        except EmailServiceError as exc:
            return ProbeOutcome(
                False, failure_stage(exc), str(exc), (), (), (), _elapsed_ms(started)
            )
        try:
            capabilities = session.capabilities
            names = tuple(folder.name for folder in session.list_folders())
        except EmailServiceError as exc:
            return ProbeOutcome(
                False, "folders", str(exc), session.capabilities, (), (), _elapsed_ms(started)
            )
        finally:
            session.close()
        missing = missing_folders(provider.folders, names)
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
        )

    def _list(
        self, provider: ProviderConfig, login: Login, holder: _SessionHolder
    ) -> list[FolderListing]:
        session = self._open(provider, login, holder)
        try:
            return [
                FolderListing(folder.name, folder.delimiter, folder.flags)
                for folder in session.list_folders()
            ]
        finally:
            session.close()

    def _statuses(
        self, provider: ProviderConfig, login: Login, holder: _SessionHolder
    ) -> dict[str, ServerFolderStatus]:
        session = self._open(provider, login, holder)
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
