"""The benchmarks' bare IDLE client reads whole lines (it used to hang or crash the bench)."""

from __future__ import annotations

import time

import imapclient
import pytest

from bench.common import wait_for_exists
from email_service.devserver.fake_imap import FakeImapServer

pytestmark = pytest.mark.integration


def test_an_exists_sent_with_the_continuation_and_a_line_cut_in_two() -> None:
    """``* 1 EXISTS`` arrives with ``+ idling`` (imaplib buffers it, so imapclient's
    ``idle_check`` waited on the socket for ever), and ``* 1 RECENT`` is cut in two by the
    packet boundary (``idle_check`` left ``CENT`` for ``idle_done``: "unexpected response")."""
    replies = {
        "IDLE": lambda tag: b"+ idling\r\n* 1 EXISTS\r\n* 1 RE",
        "DONE": lambda tag: b"CENT\r\n" + tag + b" OK idle done\r\n",
    }
    with FakeImapServer.start(replies) as server:
        client = imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=5)
        try:
            client.login("u", "p")
            client.select_folder("INBOX", readonly=True)
            client.idle()
            started = time.monotonic()
            wait_for_exists(client, 5)
            assert time.monotonic() - started < 1
            assert client.idle_done() == (b"idle done", [(1, b"RECENT")])
        finally:
            client.shutdown()
