"""One IMAP connection, driven by one thread (shell; the only module that imports imapclient).

Every imapclient, ssl and socket exception is translated here into the error tree of
``email_service.errors``. Nothing is ever marked seen: folders are opened with EXAMINE and
bodies fetched with ``BODY.PEEK[...]``. Fetch responses become ``fetched`` types there
(pure conversions); on Gmail (capability ``X-GM-EXT-1``) every message fetch also asks
for ``X-GM-MSGID``.

Connecting goes through ``security.outbound.HostGuard`` (the server-side request forgery guard,
checked at every connection, and the socket opened to the address it checked), by
overriding imapclient's factory of the imaplib connection. Error messages carry what the
server said only when it was an IMAP response, cut to printable ASCII; bytes of anything
else (another service's banner) and credentials never appear in them. A password login
quotes both strings (``LOGIN "user" "pass"``); credentials beyond printable ASCII go by
``AUTHENTICATE PLAIN`` (UTF-8), or are refused with a message that names neither.
"""

from __future__ import annotations

import functools
import imaplib
import logging
import re
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
from imapclient import imap4, tls
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from email_service.errors import (
    AuthenticationFailed,
    ConnectionLost,
    EmailServiceError,
    FolderMissing,
    HostRefused,
    HostUnresolvable,
    ImapCommandFailed,
    PermanentError,
    ServerThrottled,
    TlsVerificationFailed,
)
from email_service.imap.fetched import (
    FetchedHeaders,
    FetchedMessage,
    MessageLayout,
    chunk_from_response,
    headers_from_response,
    layout_from_response,
    message_from_response,
    section_key,
    sizes_from_response,
)
from email_service.imap.idle_stream import IdleStream
from email_service.model import ImapEndpoint, Security
from email_service.oauth.sasl import choose_mechanism, error_acknowledgement, initial_response
from email_service.security.outbound import HostGuard
from email_service.settings import MS_PER_S, ImapSettings
from email_service.sync.backoff import classify_throttle
from email_service.sync.folder_check import (
    Signals,
    Untagged,
    combine_signals,
    parse_untagged,
    read_signals,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: TCP keepalive: first probe after 30 s idle, then every 10 s, give up after 3 misses, so
#: a half-open connection in IDLE is found within about 60 s even if the server is silent.
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 3
#: IDLE waits in slices this long so a stop request is seen quickly.
IDLE_SLICE_S = 1.0
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
#: Longest piece of a server's answer quoted in an error message.
MAX_SERVER_TEXT_CHARS = 200
#: What imaplib says when the server sent bytes that are not an IMAP response; its message
#: then carries those bytes (another service's banner), so it is never quoted.
NOT_IMAP_MARKERS = ("unexpected response", "unterminated line")
#: What a LOGIN quoted string can carry as it is (RFC 3501 TEXT-CHAR, kept to printable).
LOGIN_SAFE = re.compile(r"^[\x20-\x7e]*$")


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
    #: ``IMAP_ALLOW_PRIVATE_HOSTS``: whether the host may resolve to private addresses.
    allow_private_hosts: bool

    @classmethod
    def for_endpoint(cls, endpoint: ImapEndpoint, imap: ImapSettings) -> ConnectOptions:
        """The options of a connection to ``endpoint``: its own timeout and keepalive when
        it has them, else the settings'."""
        keepalive = endpoint.socket_keepalive
        return cls(
            timeout_s=endpoint.timeout_ms / MS_PER_S
            if endpoint.timeout_ms
            else imap.connection_timeout_s,
            keepalive=imap.socket_keepalive if keepalive is None else keepalive,
            verify_tls=imap.tls_reject_unauthorized,
            allow_private_hosts=imap.allow_private_hosts,
        )


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


def server_text(value: Any) -> str:
    """What a server said, fit for a message a tenant reads: printable ASCII, bounded.

    Text of imaplib's that quotes bytes which were not an IMAP response becomes a fixed
    sentence instead.
    """
    if isinstance(value, BaseException) and len(value.args) == 1:
        value = value.args[0]  # imaplib's errors carry the server's line as bytes
    text = _text(value)
    if any(marker in text for marker in NOT_IMAP_MARKERS):
        return "the server sent something that is not an IMAP response"
    printable = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return printable[:MAX_SERVER_TEXT_CHARS]


def _throttle_hint(message: str) -> ServerThrottled | None:
    throttled, hint_s = classify_throttle(message)
    if throttled:
        return ServerThrottled(f"server asked to back off: {message}", hint_s)
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
        message = server_text(exc)
        return _throttle_hint(message) or AuthenticationFailed(
            f"{where}: the server rejected the login ({message})"
        )
    if isinstance(exc, IMAPClientAbortError):
        return ConnectionLost(f"{where}: connection lost ({server_text(exc)})")
    if isinstance(exc, ssl.SSLError | OSError):  # our own library's words, not the server's
        return ConnectionLost(f"{where}: connection lost ({type(exc).__name__}: {exc})")
    if isinstance(exc, IMAPClientError):
        message = server_text(exc)
        return _throttle_hint(message) or ImapCommandFailed(f"{where}: {message}")
    # Anything else may quote what it was given (a UnicodeEncodeError quotes a character
    # of a password): only its type is told.
    return ConnectionLost(f"{where}: {type(exc).__name__}")


def _call(where: str, action: Callable[[], T]) -> T:
    try:
        return action()
    except Exception as exc:
        raise translate_error(exc, where) from exc


def warn_if_tls_unverified(imap: ImapSettings) -> None:
    """Say at start, in every process that connects to tenants' servers, when their
    certificates will not be verified (``IMAP_TLS_REJECT_UNAUTHORIZED=false``)."""
    if not imap.tls_reject_unauthorized:
        logger.warning(
            "IMAP_TLS_REJECT_UNAUTHORIZED=false: IMAP server certificates are NOT "
            "verified; use this only against throwaway test servers"
        )


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


def _tune_socket(sock: socket.socket, *, keepalive: bool) -> None:
    """``TCP_NODELAY`` always, keepalive when configured. imapclient writes a command and
    its CRLF in two sends; with Nagle's algorithm the CRLF waits for the server to ACK the
    first part, which a server waiting for the whole line delays by ~40 ms (measured on
    Cyrus and Courier: every command of a catch-up paid it)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive:
        _enable_keepalive(sock)


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
        self._idle: IdleStream | None = None
        #: Messages in the selected folder as the server last said (EXAMINE, EXISTS,
        #: EXPUNGE), and as it was at the last UID search; None before an EXAMINE.
        self._exists: int | None = None
        self._exists_at_search: int | None = None
        #: What the untagged responses since the last ``take_signals`` meant.
        self._signals = Signals()
        self.capabilities: tuple[str, ...] = tuple(
            _text(c).upper() for c in _call("CAPABILITY", client.capabilities)
        )

    @classmethod
    def open(cls, endpoint: ImapEndpoint, login: Login, options: ConnectOptions) -> ImapSession:
        """Connect, secure, and log in; raise our errors on any failure."""
        where = f"connect to {endpoint.host}:{endpoint.port}"
        context = _ssl_context(endpoint, options)
        timeout = imapclient.SocketTimeout(connect=options.timeout_s, read=options.timeout_s)

        guard = HostGuard(options.allow_private_hosts)

        def connect() -> Any:
            return _GuardedClient(
                guard,
                endpoint.host,
                port=endpoint.port,
                ssl=endpoint.security is Security.TLS,
                ssl_context=context,
                timeout=timeout,
            )

        try:
            client = _call(where, connect)
        except (HostRefused, HostUnresolvable) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        try:
            client.normalise_times = False
            _tune_socket(client.socket(), keepalive=options.keepalive)
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
            _login_with_password(client, login)
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
        status = FolderStatus(
            uid_validity=int(response[b"UIDVALIDITY"]),
            uid_next=int(uid_next) if uid_next is not None else None,
            exists=int(response.get(b"EXISTS", 0)),
        )
        # A new start for the folder: what came before, and the EXAMINE's own EXISTS and
        # RECENT, say nothing about changes since.
        self._take_pending()
        self._exists = self._exists_at_search = status.exists
        self._signals = Signals()
        return status

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
        """Every UID above ``last_uid``, ascending."""
        return [uid for uid in self.search_uids_from(last_uid) if uid > last_uid]

    def search_uids_from(self, last_uid: int) -> list[int]:
        """The answer to ``UID SEARCH UID <last_uid + 1>:*``, ascending: the UIDs above
        ``last_uid``, or the folder's highest UID when there is none (``folder_check``
        reads what that says about the cursor)."""
        self._absorb_pending()
        self._exists_at_search = self._exists
        found = _call("UID SEARCH", lambda: self._client.search(["UID", f"{last_uid + 1}:*"]))
        return sorted(found)

    def announced_since_search(self) -> int:
        """Messages EXISTS added since the last UID search (0 when unknown)."""
        self._absorb_pending()
        if self._exists is None or self._exists_at_search is None:
            return 0
        return max(self._exists - self._exists_at_search, 0)

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

    def fetch_structure(self, uid: int) -> MessageLayout | None:
        """RFC822.SIZE and BODYSTRUCTURE of one message; None when it is gone."""
        data = self._fetch([uid], [b"RFC822.SIZE", b"BODYSTRUCTURE"]).get(uid)
        return None if data is None else layout_from_response(data)

    def fetch_chunk(self, uid: int, section: str, offset: int, length: int) -> bytes | None:
        """``length`` octets of body ``section`` ("" the whole message) from ``offset``, by
        ``BODY.PEEK`` (never sets \\Seen); fewer at the end; None when the message is gone."""
        item = f"BODY.PEEK[{section}]<{offset}.{length}>".encode("ascii")
        data = self._fetch([uid], [item]).get(uid)
        return None if data is None else chunk_from_response(data, section, offset)

    def cap_literals(self, max_bytes: int) -> None:
        """From now on, refuse (and cut the connection at) any literal the server announces
        above ``max_bytes``, before reading it: an answer cannot be larger than was asked."""
        self._client._imap.max_literal_bytes = max_bytes

    def noop(self) -> None:
        _call("NOOP", self._client.noop)

    def take_signals(self) -> Signals:
        """What the server's untagged responses meant since last asked: new mail (EXISTS),
        or a reason to verify the folder (``sync.folder_check.read_signals``).

        An EXISTS that arrives inside another command's response (say, during a FETCH) is
        not sent again when IDLE starts, so the listener asks this before entering IDLE.
        """
        self._absorb_pending()
        signals, self._signals = self._signals, Signals()
        return signals

    def _absorb_pending(self) -> None:
        """Fold the EXPUNGE, EXISTS and RECENT responses imaplib kept into ``_signals``.

        imaplib files them by kind, so their order is lost; EXPUNGEs are read first, which
        can only make a later EXISTS look larger, never smaller than the known count.
        """
        signals, self._exists = read_signals(self._take_pending(), self._exists)
        self._signals = combine_signals(self._signals, signals)

    def _take_pending(self) -> list[Untagged]:
        """The responses imaplib filed that ``read_signals`` reads, removed from its store:
        EXPUNGE, EXISTS, RECENT, a ``[CLOSED]`` code and untagged NOs."""
        pending = self._client._imap.untagged_responses
        found = [
            Untagged(keyword, int(number))
            for keyword in ("EXPUNGE", "EXISTS", "RECENT")
            for number in pending.pop(keyword, [])
        ]
        if pending.pop("CLOSED", None) is not None:
            found.append(Untagged("OK", code="CLOSED"))
        found += [Untagged("NO", text=_text(text)) for text in pending.pop("NO", [])]
        return found

    def wait_for_changes(self, stop: threading.Event, max_wait_s: float) -> Signals:
        """IDLE until the server reports new mail or a reason to verify the folder, or for
        ``max_wait_s``, or until ``stop`` (then the signals are empty).

        Reads the IDLE responses itself (``idle_stream``), not with imapclient's
        ``idle_check``, which can leave a response waiting for the next packet.
        """
        _call("IDLE", self._client.idle)
        self._idle = IdleStream(self._client._imap.file, self._client.socket())
        # No DONE after a failure: the connection is being given up, and a DONE that fails
        # too (it will, after a BYE) must not replace the server's reason.
        seen = self._idle_until(stop, max_wait_s)
        if stop.is_set():
            try:
                _call("IDLE DONE", self._client.idle_done)
            except EmailServiceError:
                logger.debug("IDLE DONE failed while stopping", exc_info=True)
            return Signals()
        _call("IDLE DONE", self._client.idle_done)
        return combine_signals(seen, self.take_signals())  # and what came with DONE's answer

    def _idle_until(self, stop: threading.Event, max_wait_s: float) -> Signals:
        stream = self._idle
        assert stream is not None
        deadline = time.monotonic() + max_wait_s
        while not stop.is_set():
            signals, self._exists = read_signals(self._read_idle_lines(stream), self._exists)
            if signals.goodbye is not None:
                raise ConnectionLost(f"IDLE: the server ended the session: {signals.goodbye}")
            if signals.new_mail or signals.verify:
                return signals
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            stream.wait_readable(min(IDLE_SLICE_S, remaining))
        return Signals()

    def server_goodbye(self) -> str | None:
        """The text of the last ``* BYE`` the server sent during a command, if any.

        imaplib keeps it among the untagged responses but reports only "socket error: EOF"
        when the server closes right after it, which hides the server's reason.
        """
        bye = self._client._imap.untagged_responses.get("BYE")
        return _text(bye[-1])[:200] if bye else None

    @staticmethod
    def _read_idle_lines(stream: IdleStream) -> list[Untagged]:
        """The untagged responses on every complete line readable now, in order.

        When the server hung up after them, they are returned if one is a BYE (so its text
        is the reason given); otherwise the hang-up raises ``ConnectionLost``.
        """
        lines, closed = stream.read_lines()
        responses = [r for r in (parse_untagged(line) for line in lines) if r is not None]
        if closed and not any(response.keyword == "BYE" for response in responses):
            raise ConnectionLost("IDLE: the server closed the connection")
        return responses

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


class _GuardedClient(imapclient.IMAPClient):  # type: ignore[misc]
    """imapclient's client, whose imaplib connection opens its socket through ``HostGuard``.

    ``_create_IMAP4`` is imapclient's (private) factory of that connection; both kinds it
    makes connect in ``_create_socket``, which the subclasses below replace.
    """

    def __init__(self, guard: HostGuard, *args: Any, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(*args, **kwargs)

    def _create_IMAP4(self) -> Any:
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _GuardedTls(self._guard, self.host, self.port, self.ssl_context, timeout)
        return _GuardedPlain(self._guard, self.host, self.port, timeout)


class _LiteralCap:
    """imaplib reads each literal whole (``read(size)``): this refuses one announced above
    ``max_literal_bytes`` before reading a byte of it (None: no cap)."""

    max_literal_bytes: int | None = None

    def read(self, size: int) -> bytes:
        cap = self.max_literal_bytes
        if cap is not None and size > cap:
            raise imaplib.IMAP4.abort(
                f"the server announced {size} bytes where at most {cap} were asked for"
            )
        data: bytes = super().read(size)  # type: ignore[misc]
        return data


class _GuardedPlain(_LiteralCap, imap4.IMAP4WithTimeout):  # type: ignore[misc]
    def __init__(self, guard: HostGuard, host: str, port: int, timeout: float | None) -> None:
        self._guard = guard
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return self._guard.connect(self.host, self.port, timeout or self._timeout)


class _GuardedTls(_LiteralCap, tls.IMAP4_TLS):  # type: ignore[misc]
    def __init__(
        self,
        guard: HostGuard,
        host: str,
        port: int,
        context: ssl.SSLContext,
        timeout: float | None,
    ) -> None:
        self._guard = guard
        super().__init__(host, port, context, timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = self._guard.connect(self.host, self.port, timeout or self._timeout)
        try:  # verified against the host name, whichever address was connected to
            wrapped: socket.socket = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
            return wrapped
        except BaseException:
            sock.close()
            raise


def _login_with_password(client: Any, login: PasswordLogin) -> None:
    """LOGIN with both strings quoted, or AUTHENTICATE PLAIN for what LOGIN cannot carry.

    imaplib quotes the password but sends the user name bare, so a name with a space or a
    quote could never log in; it is quoted here (imaplib quotes the password itself).
    Outside printable ASCII, LOGIN would need literals in a charset the server may not
    share; SASL PLAIN is UTF-8 by definition (RFC 4616).
    """
    if LOGIN_SAFE.match(login.username) and LOGIN_SAFE.match(login.password):
        _call("LOGIN", lambda: client.login(_quoted(login.username), login.password))
        return
    capabilities = tuple(_text(c).upper() for c in _call("CAPABILITY", client.capabilities))
    if "AUTH=PLAIN" not in capabilities:
        raise AuthenticationFailed(
            "LOGIN: the user name or password has characters outside printable ASCII, which "
            "IMAP LOGIN cannot carry, and the server does not offer AUTHENTICATE PLAIN: "
            "use ASCII credentials (an app password)"
        )
    _call("AUTHENTICATE PLAIN", lambda: client.plain_login(login.username, login.password))


def _quoted(text: str) -> str:
    """An IMAP quoted string (RFC 3501): backslash and double quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
        detail = next((server_text(c) for c in challenges if c), "")
        message = server_text(exc) + (f"; server said {detail}" if detail else "")
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
