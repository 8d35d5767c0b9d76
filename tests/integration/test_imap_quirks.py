"""ImapSession against a scripted server: responses bundled the way Dovecot never sends them."""

from __future__ import annotations

import threading
import time

import pytest

from email_service.devserver.fake_imap import DEFAULT_REPLIES, FakeImapServer, fake_imap_server
from email_service.errors import ConnectionLost
from email_service.imap.session import ConnectOptions, ImapSession, PasswordLogin
from email_service.model import ImapEndpoint, Security
from email_service.sync.folder_check import Signals

OPTIONS = ConnectOptions(timeout_s=5, keepalive=True, verify_tls=True, allow_private_hosts=True)


def open_session(port: int) -> ImapSession:
    return ImapSession.open(
        ImapEndpoint("127.0.0.1", port, Security.NONE), PasswordLogin("u", "p"), OPTIONS
    )


def test_exists_sent_with_the_idle_continuation_is_seen_at_once() -> None:
    replies = {"IDLE": lambda tag: b"+ idling\r\n* 4 EXISTS\r\n* 1 RECENT\r\n"}
    with fake_imap_server(replies) as port:
        session = open_session(port)
        session.examine("INBOX")
        started = time.monotonic()
        assert session.wait_for_changes(threading.Event(), max_wait_s=5).new_mail is True
        assert time.monotonic() - started < 1
        session.close()


def test_exists_inside_another_response_is_reported_before_idle() -> None:
    replies = {"NOOP": lambda tag: b"* 4 EXISTS\r\n" + tag + b" OK done\r\n"}
    with fake_imap_server(replies) as port:
        session = open_session(port)
        session.examine("INBOX")
        assert session.take_signals() == Signals()
        session.noop()
        assert session.take_signals() == Signals(new_mail=True)
        assert session.take_signals() == Signals()
        session.close()


def test_server_closing_during_idle_is_a_lost_connection_with_its_reason() -> None:
    """BYE, then the server hangs up: the error is the server's reason, not the DONE that
    can no longer be sent."""
    replies = {"IDLE": lambda tag: b"+ idling\r\n* BYE server shut down by signal\r\n"}
    with FakeImapServer.start(replies, drop_after="IDLE") as server:
        session = open_session(server.port)
        session.examine("INBOX")
        with pytest.raises(ConnectionLost, match=r"ended the session: .*shut down by signal"):
            session.wait_for_changes(threading.Event(), max_wait_s=5)
        session.close()


def test_a_bye_before_hanging_up_during_a_command_is_kept() -> None:
    """imaplib reports "socket error: EOF"; the BYE text stays available for the log."""
    replies = {"NOOP": lambda tag: b"* BYE maintenance window, back at 06:00\r\n"}
    with FakeImapServer.start(replies, drop_after="NOOP") as server:
        session = open_session(server.port)
        session.examine("INBOX")
        assert session.server_goodbye() is None
        with pytest.raises(ConnectionLost):
            session.noop()
        assert session.server_goodbye() == "maintenance window, back at 06:00"
        session.close()


def test_idle_times_out_quietly_and_stops_on_request() -> None:
    with fake_imap_server({}) as port:
        session = open_session(port)
        session.examine("INBOX")
        assert session.wait_for_changes(threading.Event(), max_wait_s=0.3) == Signals()
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        assert session.wait_for_changes(stop, max_wait_s=30) == Signals()
        assert time.monotonic() - started < 2
        session.close()


def test_a_smaller_exists_in_idle_asks_for_a_verification() -> None:
    """Courier's recreated folder: three messages known, then ``* 1 EXISTS``."""
    replies = {"IDLE": lambda tag: b"+ idling\r\n* 1 EXISTS\r\n"}
    with fake_imap_server(replies) as port:
        session = open_session(port)
        session.examine("INBOX")  # the fake says 3 EXISTS
        signals = session.wait_for_changes(threading.Event(), max_wait_s=5)
        assert signals.verify == "EXISTS 1 is below the 3 messages known, without an EXPUNGE"
        session.close()


@pytest.mark.parametrize(
    ("untagged", "reason"),
    [
        (b"* OK [CLOSED] mailbox gone", "the server closed the folder ([CLOSED])"),
        (b"* NO mailbox deleted", "the server said NO: mailbox deleted"),
        (b"* 1 EXPUNGE\r\n* 1 EXPUNGE\r\n* 1 EXPUNGE", "every message of the folder was expunged"),
    ],
    ids=["closed", "untagged-no", "every-message-expunged"],
)
def test_signs_inside_a_command_response_ask_for_a_verification(
    untagged: bytes, reason: str
) -> None:
    replies = {
        "NOOP": lambda tag: untagged + b"\r\n" + tag + b" OK done\r\n",
        # A [CLOSED] in an EXAMINE's own answer only says the previous folder was closed.
        "EXAMINE": lambda tag: (
            b"* OK [CLOSED] Previous mailbox closed.\r\n" + DEFAULT_REPLIES["EXAMINE"](tag)
        ),
    }
    with fake_imap_server(replies) as port:
        session = open_session(port)
        session.examine("INBOX")  # 3 EXISTS
        assert session.take_signals() == Signals()
        session.noop()
        verify = session.take_signals().verify
        assert verify is not None and verify.startswith(reason)
        session.close()
