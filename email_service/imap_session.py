"""One IMAP connection, driven by one thread (shell; the only module that imports imapclient).

Every imapclient, ssl and socket exception is translated here into the error tree of
``email_service.errors``. Nothing is ever marked seen: folders are opened with EXAMINE and
bodies fetched with ``BODY.PEEK[...]``. Fetch responses become ``fetched`` types there
(pure conversions); on Gmail (capability ``X-GM-EXT-1``) every message fetch also asks
for ``X-GM-MSGID``.
"""

from __future__ import annotations

import functools
import logging
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from email_service.backoff import classify_throttle
from email_service.errors import (
    AuthenticationFailed,
    ConnectionLost,
    EmailServiceError,
    FolderMissing,
    HostUnresolvable,
    ImapCommandFailed,
    PermanentError,
    ServerThrottled,
    TlsVerificationFailed,
)
from email_service.fetched import (
    FetchedHeaders,
    FetchedMessage,
    headers_from_response,
    message_from_response,
    section_key,
    sizes_from_response,
)
from email_service.model import ImapEndpoint, Security
from oauth.sasl import choose_mechanism, error_acknowledgement, initial_response

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: TCP keepalive: first probe after 30 s idle, then every 10 s, give up after 3 misses, so
#: a half-open connection in IDLE is found within about 60 s even if the server is silent.
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 3
#: IDLE waits in slices this long so a stop request is seen quickly.
IDLE_SLICE_S = 1.0
#: An untagged response announcing new mail in the selected folder.
NEW_MAIL_LINE = re.compile(rb"^\* \d+ (EXISTS|RECENT)$", re.IGNORECASE)
#: Bytes read at a time while draining IDLE responses.
READ_CHUNK_BYTES = 65536
#: Data items fetched per message; PEEK so nothing is marked \\Seen.
FETCH_ITEMS = [b"BODY.PEEK[]", b"INTERNALDATE", b"FLAGS", b"RFC822.SIZE"]
#: Data items fetched of a message too large to download whole.
HEADER_ITEMS = [b"BODY.PEEK[HEADER]", b"BODYSTRUCTURE", b"INTERNALDATE", b"FLAGS", b"RFC822.SIZE"]
#: Gmail's stable message id, the same in every label folder (capability X-GM-EXT-1).
GMAIL_CAPABILITY = "X-GM-EXT-1"
GMAIL_MSGID_ITEM = b"X-GM-MSGID"
#: Words in a SELECT/EXAMINE failure that mean the folder does not exist.
MISSING_FOLDER_MARKERS = (
    "[NONEXISTENT]",
    "DOESN'T EXIST",
    "DOES NOT EXIST",
    "NOT EXIST",
    "UNKNOWN MAILBOX",
    "NO SUCH MAILBOX",
)


@dataclass(frozen=True)
class PasswordLogin:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"PasswordLogin(username={self.username!r}, password=<redacted>)"


@dataclass(frozen=True)
class OAuthLogin:
    """Log in with an OAuth2 access token (SASL XOAUTH2 or OAUTHBEARER)."""

    username: str
    access_token: str
    #: ``IMAP_OAUTH_AUTH_MECHANISM``; None lets the server's CAPABILITY decide.
    mechanism: str | None
    #: The token was just issued (so a refused login is not about its age).
    fresh: bool
    #: When a session logged in with this token must log in again (before it expires).
    renew_at: datetime

    def __repr__(self) -> str:
        return f"OAuthLogin(username={self.username!r}, access_token=<redacted>)"


Login = PasswordLogin | OAuthLogin


@dataclass(frozen=True)
class ConnectOptions:
    """How to connect, beyond the endpoint: from settings."""

    timeout_s: float
    keepalive: bool
    verify_tls: bool


@dataclass(frozen=True)
class FolderStatus:
    uid_validity: int
    uid_next: int | None
    exists: int


@dataclass(frozen=True)
class FolderInfo:
    name: str
    delimiter: str | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class FolderList:
    """A LIST answer read up to a bound; ``truncated`` when the server had more to say."""

    folders: tuple[FolderInfo, ...]
    truncated: bool


#: LIST entries parsed at a time by ``list_folders_bounded`` (imapclient parses a list).
LIST_PARSE_BATCH = 500


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _throttle_hint(message: str) -> ServerThrottled | None:
    throttled, hint_s = classify_throttle(message)
    if throttled:
        return ServerThrottled(f"server asked to back off: {message[:200]}", hint_s)
    return None


def translate_error(exc: BaseException, where: str) -> EmailServiceError:
    """Our error for a library, ssl or socket exception raised while doing ``where``."""
    if isinstance(exc, EmailServiceError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsVerificationFailed(
            f"{where}: the server's TLS certificate did not verify ({exc.verify_message}); "
            "check the host name, or give the CA with --tls-ca-file"
        )
    if isinstance(exc, socket.gaierror):
        return HostUnresolvable(f"{where}: the host name does not resolve ({exc.strerror})")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionLost(f"{where}: connection refused")
    if isinstance(exc, TimeoutError | socket.timeout):
        return ConnectionLost(f"{where}: timed out")
    if isinstance(exc, LoginError):
        message = _text(exc.args[0]) if exc.args else str(exc)
        return _throttle_hint(message) or AuthenticationFailed(
            f"{where}: the server rejected the login ({message[:200]})"
        )
    if isinstance(exc, IMAPClientAbortError | ssl.SSLError | OSError):
        return ConnectionLost(f"{where}: connection lost ({type(exc).__name__}: {exc})")
    if isinstance(exc, IMAPClientError):
        message = str(exc)
        return _throttle_hint(message) or ImapCommandFailed(f"{where}: {message[:300]}")
    return ConnectionLost(f"{where}: {type(exc).__name__}: {exc}")


def _call(where: str, action: Callable[[], T]) -> T:
    try:
        return action()
    except Exception as exc:
        raise translate_error(exc, where) from exc


def _ssl_context(endpoint: ImapEndpoint, options: ConnectOptions) -> ssl.SSLContext:
    return _shared_ssl_context(endpoint.tls_ca_file, options.verify_tls)


@functools.lru_cache(maxsize=64)
def _shared_ssl_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """One context per (CA file, verify): loading the system CAs costs ~30 ms of CPU, which
    1,000 connections would pay each; a context is safe to share between threads. A CA file
    changed on disk is read again after a restart."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _enable_keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


class ImapSession:
    """A logged-in IMAP connection. Not thread-safe, except ``interrupt``."""

    def __init__(
        self, client: Any, endpoint: ImapEndpoint, renew_at: datetime | None = None
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        #: When this session must log in again (its OAuth token is about to expire).
        self.renew_at = renew_at
        self._closed = False
        self._idle_partial = b""
        self.capabilities: tuple[str, ...] = tuple(
            _text(c).upper() for c in _call("CAPABILITY", client.capabilities)
        )

    @classmethod
    def open(cls, endpoint: ImapEndpoint, login: Login, options: ConnectOptions) -> ImapSession:
        """Connect, secure, and log in; raise our errors on any failure."""
        where = f"connect to {endpoint.host}:{endpoint.port}"
        context = _ssl_context(endpoint, options)
        timeout = imapclient.SocketTimeout(connect=options.timeout_s, read=options.timeout_s)

        def connect() -> Any:
            return imapclient.IMAPClient(
                endpoint.host,
                port=endpoint.port,
                ssl=endpoint.security is Security.TLS,
                ssl_context=context,
                timeout=timeout,
            )

        client = _call(where, connect)
        try:
            client.normalise_times = False
            if options.keepalive:
                _enable_keepalive(client.socket())
            if endpoint.security is Security.STARTTLS:
                if not client.has_capability("STARTTLS"):
                    raise PermanentError(
                        f"{where}: the server does not offer STARTTLS; "
                        "use --security tls, or none only on a trusted network"
                    )
                _call("STARTTLS", lambda: client.starttls(context))
            if isinstance(login, OAuthLogin):
                _authenticate_oauth(client, login)
                return cls(client, endpoint, login.renew_at)
            _call("LOGIN", lambda: client.login(login.username, login.password))
            return cls(client, endpoint)
        except BaseException:
            _shutdown_quietly(client)
            raise

    def has_capability(self, name: str) -> bool:
        return name.upper() in self.capabilities

    def list_folders(self) -> list[FolderInfo]:
        """Every folder (the whole answer is read: for operators' tools only)."""
        return _folder_infos(_call("LIST", self._client.list_folders))

    def list_folders_bounded(self, *, max_folders: int, max_bytes: int) -> FolderList:
        """Every folder, but at most ``max_folders`` of them and ``max_bytes`` read.

        imapclient reads a whole LIST answer into memory (two million folders: hundreds of
        megabytes); this reads it line by line and stops past either bound. The rest of
        the answer is never read: the connection is cut and the session closed, so use
        a session for nothing else after a truncated listing.
        """
        imap = self._client._imap
        names = [self._client._normalise_folder(value) for value in ("", "*")]
        tag = _call("LIST", lambda: imap._command("LIST", *names))
        entries: list[Any] = []
        folders: list[FolderInfo] = []
        read = 0
        try:
            while True:
                line = _call("LIST", imap._get_line)
                read += len(line) + 2
                if line.startswith(tag + b" "):
                    imap.tagged_commands.pop(tag, None)
                    _check_tagged("LIST", line[len(tag) + 1 :])
                    break
                entry, read = _read_literals(imap, line, read, max_bytes)
                if entry is None or read > max_bytes:
                    return self._truncated(folders, entries)
                payload = _list_payload(entry)
                if payload is not None:
                    entries.append(payload)
                if len(entries) >= LIST_PARSE_BATCH:
                    folders += self._parse_folders(entries)
                    entries = []
                if len(folders) + len(entries) > max_folders:
                    return self._truncated(folders, entries, max_folders)
        except BaseException:
            self.abandon()
            raise
        return FolderList(tuple(folders + self._parse_folders(entries)), truncated=False)

    def _truncated(
        self, folders: list[FolderInfo], entries: list[Any], limit: int | None = None
    ) -> FolderList:
        self.abandon()
        kept = folders + self._parse_folders(entries)
        return FolderList(tuple(kept[:limit]), truncated=True)

    def _parse_folders(self, entries: list[Any]) -> list[FolderInfo]:
        if not entries:
            return []
        raw = [part for entry in entries for part in entry]
        return _folder_infos(_call("LIST", lambda: self._client._proc_folder_list(raw)))

    def abandon(self) -> None:
        """Cut the connection without logging out (a response is still half read)."""
        self._closed = True
        _shutdown_quietly(self._client)

    def examine(self, folder: str) -> FolderStatus:
        """Open ``folder`` read-only and return its UIDVALIDITY, UIDNEXT and size."""
        try:
            response = self._client.select_folder(folder, readonly=True)
        except IMAPClientError as exc:
            message = str(exc).upper()
            if any(marker in message for marker in MISSING_FOLDER_MARKERS):
                raise FolderMissing(f"folder {folder!r} does not exist on the server") from exc
            raise translate_error(exc, "EXAMINE") from exc
        except Exception as exc:
            raise translate_error(exc, "EXAMINE") from exc
        uid_next = response.get(b"UIDNEXT")
        return FolderStatus(
            uid_validity=int(response[b"UIDVALIDITY"]),
            uid_next=int(uid_next) if uid_next is not None else None,
            exists=int(response.get(b"EXISTS", 0)),
        )

    def status(self, folder: str) -> FolderStatus:
        """``folder``'s UIDVALIDITY, UIDNEXT and message count by STATUS, without selecting it.

        RFC 3501 (6.3.10) warns that STATUS on the selected folder may be stale: for that
        one, EXAMINE again instead.
        """
        try:
            response = self._client.folder_status(folder, ["MESSAGES", "UIDNEXT", "UIDVALIDITY"])
        except IMAPClientError as exc:
            message = str(exc).upper()
            if any(marker in message for marker in MISSING_FOLDER_MARKERS):
                raise FolderMissing(f"folder {folder!r} does not exist on the server") from exc
            raise translate_error(exc, "STATUS") from exc
        except Exception as exc:
            raise translate_error(exc, "STATUS") from exc
        if b"UIDVALIDITY" not in response:
            raise ImapCommandFailed(f"STATUS: the server gave no UIDVALIDITY for {folder!r}")
        uid_next = response.get(b"UIDNEXT")
        return FolderStatus(
            uid_validity=int(response[b"UIDVALIDITY"]),
            uid_next=int(uid_next) if uid_next is not None else None,
            exists=int(response.get(b"MESSAGES", 0)),
        )

    def search_uids_after(self, last_uid: int) -> list[int]:
        """Every UID above ``last_uid``, ascending (``UID n:*`` also returns the last one)."""
        found = _call("UID SEARCH", lambda: self._client.search(["UID", f"{last_uid + 1}:*"]))
        return sorted(uid for uid in found if uid > last_uid)

    def search_all_uids(self) -> list[int]:
        return sorted(_call("UID SEARCH", lambda: self._client.search("ALL")))

    @property
    def is_gmail(self) -> bool:
        """Whether the server is Gmail (X-GM-EXT-1): messages carry X-GM-MSGID."""
        return self.has_capability(GMAIL_CAPABILITY)

    def _items(self, items: list[bytes]) -> list[bytes]:
        return [*items, GMAIL_MSGID_ITEM] if self.is_gmail else items

    def _fetch(self, uids: Sequence[int], items: list[bytes]) -> dict[int, dict[bytes, Any]]:
        response = _call("UID FETCH", lambda: self._client.fetch(list(uids), items))
        return {int(uid): data for uid, data in response.items()}

    def fetch_sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of the messages still present among ``uids``."""
        if not uids:
            return {}
        return sizes_from_response(self._fetch(uids, [b"RFC822.SIZE"]))

    def fetch_messages(self, uids: Sequence[int]) -> list[FetchedMessage]:
        """The messages still present among ``uids`` (an expunged UID is simply absent)."""
        if not uids:
            return []
        response = self._fetch(uids, self._items(FETCH_ITEMS))
        found = (message_from_response(uid, response[uid]) for uid in sorted(response))
        return [message for message in found if message is not None]

    def fetch_headers(self, uids: Sequence[int]) -> list[FetchedHeaders]:
        """Header section, BODYSTRUCTURE and metadata of the messages present among ``uids``."""
        if not uids:
            return []
        response = self._fetch(uids, self._items(HEADER_ITEMS))
        found = (headers_from_response(uid, response[uid]) for uid in sorted(response))
        return [headers for headers in found if headers is not None]

    def fetch_sections(self, uid: int, sections: Sequence[tuple[str, int]]) -> dict[str, bytes]:
        """The first ``max_octets`` of each body ``section`` of one message."""
        if not sections:
            return {}
        items = [f"BODY.PEEK[{name}]<0.{max_octets}>".encode() for name, max_octets in sections]
        data = self._fetch([uid], items).get(uid, {})
        found = {}
        for name, _max_octets in sections:
            value = data.get(section_key(name))
            if value is not None:
                found[name] = bytes(value)
        return found

    def noop(self) -> None:
        _call("NOOP", self._client.noop)

    def take_new_mail_hint(self) -> bool:
        """Whether the server announced new mail (EXISTS) during the commands since last asked.

        An EXISTS that arrives inside another command's response (say, during a FETCH) is
        not sent again when IDLE starts, so the listener asks this before entering IDLE.
        """
        pending = self._client._imap.untagged_responses
        announced = pending.pop("EXISTS", None) is not None
        pending.pop("RECENT", None)
        return announced

    def wait_for_changes(self, stop: threading.Event, max_wait_s: float) -> bool:
        """IDLE until the server reports new mail (True), or ``max_wait_s`` or stop (False).

        Reads the IDLE responses itself rather than with imapclient's ``idle_check``: that
        polls only the socket, so a response already sitting in imaplib's read buffer or in
        the TLS layer (an EXISTS sent together with the ``+ idling`` continuation) would wait
        for the next packet; and it returns nothing, instead of failing, at end of file.
        """
        _call("IDLE", self._client.idle)
        self._idle_partial = b""
        try:
            deadline = time.monotonic() + max_wait_s
            while not stop.is_set():
                if self._read_idle_lines():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                _wait_readable(self._client.socket(), min(IDLE_SLICE_S, remaining))
            return False
        finally:
            if stop.is_set():
                try:
                    _call("IDLE DONE", self._client.idle_done)
                except EmailServiceError:
                    logger.debug("IDLE DONE failed while stopping", exc_info=True)
            else:
                _call("IDLE DONE", self._client.idle_done)

    def _read_idle_lines(self) -> bool:
        """Consume every complete line readable now; True if one announced new mail."""
        data = self._idle_partial + self._read_available()
        *lines, self._idle_partial = data.split(b"\r\n")
        new_mail = False
        for line in lines:
            if NEW_MAIL_LINE.match(line):
                new_mail = True
            elif line.upper().startswith(b"* BYE"):
                raise ConnectionLost(f"IDLE: the server ended the session: {_text(line)[:200]}")
        return new_mail

    def _read_available(self) -> bytes:
        """Whatever can be read without blocking; ``ConnectionLost`` at end of file."""
        reader = self._client._imap.file
        sock = self._client.socket()
        timeout = sock.gettimeout()
        sock.setblocking(False)
        received = bytearray()
        try:
            while True:
                try:
                    data = reader.read1(READ_CHUNK_BYTES)
                except (BlockingIOError, ssl.SSLWantReadError):
                    break
                except OSError as exc:
                    raise ConnectionLost(f"IDLE: connection lost ({exc})") from exc
                if data:
                    received += data
                    continue
                if isinstance(sock, ssl.SSLSocket) or _closed_by_peer(sock):
                    raise ConnectionLost("IDLE: the server closed the connection")
                break
        finally:
            sock.settimeout(timeout)
        return bytes(received)

    def interrupt(self) -> None:
        """From another thread: cut the connection so a blocked call returns at once."""
        with suppress(OSError):
            self._client.socket().shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Log out politely when possible; never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.logout()
        except Exception:  # closing must not fail
            _shutdown_quietly(self._client)


def _authenticate_oauth(client: Any, login: OAuthLogin) -> None:
    """AUTHENTICATE with the access token; the server's error challenge goes into the message.

    imapclient's ``oauth2_login`` answers an error challenge by sending the token again;
    RFC 7628 asks for an acknowledgement instead, after which the server sends NO.
    """
    capabilities = tuple(_text(c).upper() for c in _call("CAPABILITY", client.capabilities))
    mechanism = choose_mechanism(login.mechanism, capabilities)
    challenges: list[bytes] = []

    def respond(challenge: bytes) -> bytes:
        if not challenges and not challenge:
            challenges.append(b"")
            return initial_response(mechanism, login.username, login.access_token)
        challenges.append(challenge)
        return error_acknowledgement(mechanism)

    where = f"AUTHENTICATE {mechanism}"
    try:
        client._command_and_check("authenticate", mechanism, respond)
    except IMAPClientAbortError as exc:
        raise translate_error(exc, where) from exc
    except IMAPClientError as exc:  # NO or BAD: the token (or the account) was refused
        detail = next((_text(c) for c in challenges if c), "")
        message = str(exc)[:200] + (f"; server said {detail[:200]}" if detail else "")
        raise _throttle_hint(message) or AuthenticationFailed(
            f"{where}: the server rejected the access token ({message})"
        ) from exc
    except Exception as exc:
        raise translate_error(exc, where) from exc


def _folder_infos(parsed: Sequence[tuple[Any, Any, Any]]) -> list[FolderInfo]:
    """imapclient's ``(flags, delimiter, name)`` triples as ``FolderInfo``."""
    return [
        FolderInfo(
            name=_text(name),
            delimiter=_text(delimiter) if delimiter else None,
            flags=tuple(_text(flag) for flag in flags),
        )
        for flags, delimiter, name in parsed
    ]


#: ``* LIST`` (or ``* XLIST``) at the start of an untagged response line.
_LIST_PREFIXES = (b"* LIST ", b"* XLIST ")
#: A literal announced at the end of a response line: ``{123}``.
_LITERAL = re.compile(rb"\{(\d+)\}$")


def _read_literals(
    imap: Any, line: bytes, read: int, max_bytes: int
) -> tuple[list[Any] | None, int]:
    """The response that starts with ``line``, its literals read (imaplib's item shapes:
    ``(line, literal)`` pairs then the rest of the line); None when a literal would take
    more than ``max_bytes`` in all, which is then never read."""
    parts: list[Any] = []
    while match := _LITERAL.search(line):
        size = int(match.group(1))
        if read + size > max_bytes:
            return None, read
        literal = _call("LIST", functools.partial(imap.read, size))
        parts.append((line, literal))
        line = _call("LIST", imap._get_line)
        read += size + len(line) + 2
    parts.append(line)
    return parts, read


def _list_payload(entry: list[Any]) -> list[Any] | None:
    """A LIST response without its ``* LIST`` prefix (as imaplib stores it), None for any
    other untagged response; ``ConnectionLost`` for BYE."""
    first = entry[0]
    head = first[0] if isinstance(first, tuple) else first
    upper = head[:16].upper()
    if upper.startswith(b"* BYE"):
        raise ConnectionLost(f"LIST: the server ended the session: {_text(head)[:200]}")
    prefix = next((p for p in _LIST_PREFIXES if upper.startswith(p)), None)
    if prefix is None:
        return None
    rest = head[len(prefix) :]
    return [(rest, first[1]) if isinstance(first, tuple) else rest, *entry[1:]]


def _check_tagged(where: str, status: bytes) -> None:
    """Raise our error unless a tagged answer (after the tag) is OK."""
    if not status.upper().startswith(b"OK"):
        raise ImapCommandFailed(f"{where}: {_text(status)[:300]}")


def _wait_readable(sock: socket.socket, timeout_s: float) -> None:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    poller.poll(timeout_s * 1000)


def _closed_by_peer(sock: socket.socket) -> bool:
    """On a plain non-blocking socket, tell end of file from "nothing yet"."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _shutdown_quietly(client: Any) -> None:
    try:
        client.shutdown()
    except Exception:  # best effort on a broken connection
        logger.debug("shutdown of a broken IMAP connection failed", exc_info=True)


@contextmanager
def open_session(
    endpoint: ImapEndpoint, login: Login, options: ConnectOptions
) -> Iterator[ImapSession]:
    session = ImapSession.open(endpoint, login, options)
    try:
        yield session
    finally:
        session.close()
