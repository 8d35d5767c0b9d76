"""The ``email-service`` command line."""
