"""The mail server: one IMAP connection and what its commands return."""
