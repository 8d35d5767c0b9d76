"""A throwaway Dovecot IMAP server for tests and the demo (shell; see ``dovecot``)."""

from email_service.devserver.dovecot import (
    DevServerError,
    DovecotServer,
    ensure_dovecot_installed,
    find_dovecot_binary,
    start_dovecot,
)

__all__ = [
    "DevServerError",
    "DovecotServer",
    "ensure_dovecot_installed",
    "find_dovecot_binary",
    "start_dovecot",
]
