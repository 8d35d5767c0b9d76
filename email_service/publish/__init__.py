"""Onto the Redis stream exactly once per UID; dead letters."""
