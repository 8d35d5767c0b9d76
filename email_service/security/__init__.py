"""Connections to tenants' servers (SSRF guard) and secrets at rest."""
