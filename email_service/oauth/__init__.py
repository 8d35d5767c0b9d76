"""The OAuth2 client side: the only package that imports authlib (and urllib3).

It takes plain values (``client.OAuthClientConfig``) and imports nothing of the service
but ``errors`` (what its failures are translated into) and ``security`` (the SSRF guard
its token requests connect through); ``tests/unit/test_package_imports.py`` checks it.
"""
