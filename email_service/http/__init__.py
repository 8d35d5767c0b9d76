"""The HTTP server of both roles and its health endpoints."""
