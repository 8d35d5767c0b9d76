"""The throwaway Cyrus IMAP: logins, delivery, IDLE push, a recreated folder, restarts."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from email_service.devserver import CyrusServer, start_cyrus
from tests.helpers import make_message, unique

pytestmark = pytest.mark.integration

#: Client-side socket timeout; every answer here takes milliseconds.
IMAP_TIMEOUT_S = 10.0
#: Cyrus's idled pushes EXISTS within milliseconds; a second is a clear failure (without
#: idled, imapd would poll every 60 s).
IDLE_PUSH_TIMEOUT_S = 1.0


def new_user(server: CyrusServer) -> tuple[str, str]:
    user = (unique("user"), unique("pw"))
    server.add_user(*user)
    return user


def login(server: CyrusServer, user: tuple[str, str], how: str = "plain") -> IMAPClient:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    if how == "tls":
        client = IMAPClient(
            "localhost", port=server.imaps_port, ssl_context=context, timeout=IMAP_TIMEOUT_S
        )
    else:
        client = IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=IMAP_TIMEOUT_S)
        if how == "starttls":
            client.starttls(context)
    try:
        client.login(*user)
    except LoginError:
        client.shutdown()
        raise
    return client


@pytest.mark.parametrize("how", ["plain", "starttls", "tls"])
def test_logins_with_each_security_and_a_wrong_password_refused(
    cyrus: CyrusServer, how: str
) -> None:
    user = new_user(cyrus)
    client = login(cyrus, user, how)
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 0
    client.logout()
    with pytest.raises(LoginError):
        login(cyrus, (user[0], "wrong"), how)


def test_delivery_to_inbox_and_a_folder_is_pushed_to_idle_at_once(cyrus: CyrusServer) -> None:
    user = new_user(cyrus)
    cyrus.create_folder(user[0], "Support")
    client = login(cyrus, user)
    assert "Support" in [name for _flags, _sep, name in client.list_sub_folders()]
    client.select_folder("INBOX", readonly=True)
    client.idle()
    started = time.monotonic()
    cyrus.deliver(user[0], make_message("pushed"))
    responses = client.idle_check(timeout=IDLE_PUSH_TIMEOUT_S * 5)
    pushed_s = time.monotonic() - started
    client.idle_done()
    assert (1, b"EXISTS") in responses
    assert pushed_s < IDLE_PUSH_TIMEOUT_S
    cyrus.deliver(user[0], make_message("filed"), folder="Support")
    assert client.folder_status("Support", ["MESSAGES"])[b"MESSAGES"] == 1
    client.logout()


def test_a_folder_recreated_under_idle_shows_only_expunges_and_a_new_uidvalidity(
    cyrus: CyrusServer,
) -> None:
    """What the listener has to notice on Cyrus: no BYE, no EXISTS, just EXPUNGEs."""
    user = new_user(cyrus)
    cyrus.create_folder(user[0], "Support")
    for n in range(3):
        cyrus.deliver(user[0], make_message(f"old {n}"), folder="Support")
    client = login(cyrus, user)
    before = client.select_folder("Support", readonly=True)[b"UIDVALIDITY"]
    client.idle()
    cyrus.delete_folder(user[0], "Support")
    cyrus.create_folder(user[0], "Support")
    cyrus.deliver(user[0], make_message("new"), folder="Support")
    seen: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        seen += client.idle_check(timeout=0.5)
    client.idle_done()
    assert seen == [(1, b"EXPUNGE")] * 3
    assert client.search(["UID", "1:*"]) == []  # the session stays on the dead folder
    after = client.folder_status("Support", ["UIDVALIDITY", "MESSAGES"])
    assert after[b"UIDVALIDITY"] != before and after[b"MESSAGES"] == 1
    client.logout()


def test_restart_in_the_same_workdir_keeps_users_and_mail(tmp_path: Path) -> None:
    with start_cyrus(tmp_path, users=[("bob", "pw")]) as first:
        first.deliver("bob", make_message("kept"))
        ports = (first.imap_port, first.imaps_port, first.lmtp_port)
        pids = first.pids()
        assert pids
    assert first.pids() == []
    with start_cyrus(tmp_path, ports=ports) as second:
        client = login(second, ("bob", "pw"))
        assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 1
        client.logout()
