"""ImapSession against a scripted server: responses bundled the way Dovecot never sends them."""

from __future__ import annotations

import threading
import time

import pytest

from email_service.errors import ConnectionLost
from email_service.imap_session import ConnectOptions, ImapSession, PasswordLogin
from email_service.model import ImapEndpoint, Security
from tests.fake_imap import fake_imap_server

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
        assert session.wait_for_changes(threading.Event(), max_wait_s=5) is True
        assert time.monotonic() - started < 1
        session.close()


def test_exists_inside_another_response_is_reported_before_idle() -> None:
    replies = {"NOOP": lambda tag: b"* 4 EXISTS\r\n" + tag + b" OK done\r\n"}
    with fake_imap_server(replies) as port:
        session = open_session(port)
        session.examine("INBOX")
        session.take_new_mail_hint()
        assert session.take_new_mail_hint() is False
        session.noop()
        assert session.take_new_mail_hint() is True
        assert session.take_new_mail_hint() is False
        session.close()


def test_server_closing_during_idle_is_a_lost_connection() -> None:
    replies = {"IDLE": lambda tag: b"+ idling\r\n* BYE shutting down\r\n"}
    with fake_imap_server(replies) as port:
        session = open_session(port)
        session.examine("INBOX")
        with pytest.raises(ConnectionLost, match="ended the session"):
            session.wait_for_changes(threading.Event(), max_wait_s=5)
        session.close()


def test_idle_times_out_quietly_and_stops_on_request() -> None:
    with fake_imap_server({}) as port:
        session = open_session(port)
        session.examine("INBOX")
        assert session.wait_for_changes(threading.Event(), max_wait_s=0.3) is False
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        assert session.wait_for_changes(stop, max_wait_s=30) is False
        assert time.monotonic() - started < 2
        session.close()
