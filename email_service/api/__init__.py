"""The provider management API of ``email-service api`` (the tenant UI's way in).

Core modules decide (``validation``, ``ratelimit``, ``cors``, ``views``,
``openapi``, ``problems``); shell modules act (``auth`` owns the JOSE library, ``stats``
reads Redis counters, ``imap_calls`` opens IMAP connections, ``parts`` builds what the
handlers use, ``providers`` holds the handlers, ``app`` wires them into aiohttp with the
middlewares, ``server`` runs the process). See docs/api.md.
"""
