"""Throwaway IMAP servers for tests and the demo: Dovecot (``dovecot``) and Cyrus (``cyrus``).

Both are shells; ``MailServer`` is what they have in common.
"""

from email_service.devserver.cyrus import CyrusServer, start_cyrus
from email_service.devserver.dovecot import (
    DevServerError,
    DovecotServer,
    ensure_dovecot_installed,
    find_dovecot_binary,
    start_dovecot,
)
from email_service.devserver.mailserver import MailServer

__all__ = [
    "CyrusServer",
    "DevServerError",
    "DovecotServer",
    "MailServer",
    "ensure_dovecot_installed",
    "find_dovecot_binary",
    "start_cyrus",
    "start_dovecot",
]
