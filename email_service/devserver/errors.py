"""The development server's error (core: no IO)."""

from __future__ import annotations

from email_service.errors import EmailServiceError


class DevServerError(EmailServiceError):
    """The throwaway Dovecot could not be installed, started, used or stopped.

    The message says which step failed and, when Dovecot was running, ends with the tail of
    its log so the cause is visible without opening the work directory.
    """
