"""CORS decisions for the tenant UI's origins."""

from __future__ import annotations

import pytest

from email_service.api.cors import cors_headers, preflight_headers

ALLOWED = ("https://ui.example.com", "http://localhost:3000")


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        ("https://ui.example.com", ALLOWED, True),
        ("HTTPS://UI.EXAMPLE.COM", ALLOWED, True),
        ("http://localhost:3000", ALLOWED, True),
        ("https://ui.example.com.evil.test", ALLOWED, False),
        ("http://ui.example.com", ALLOWED, False),
        (None, ALLOWED, False),
        ("https://anything.test", ("*",), True),
        ("https://ui.example.com", (), False),
    ],
    ids=["listed", "case", "port", "suffix-trick", "scheme", "no-origin", "star", "none-set"],
)
def test_which_origins_get_headers(
    origin: str | None, allowed: tuple[str, ...], expected: bool
) -> None:
    headers = cors_headers(origin, allowed)
    assert bool(headers) is expected
    assert (preflight_headers(origin, allowed) is not None) is expected
    if expected:
        assert headers["Access-Control-Allow-Origin"] == origin
        assert headers["Vary"] == "Origin"
        assert "Access-Control-Allow-Credentials" not in headers


def test_preflight_lists_methods_and_headers() -> None:
    headers = preflight_headers("https://ui.example.com", ALLOWED)
    assert headers is not None
    assert set(headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET",
        "POST",
        "PATCH",
        "DELETE",
    }
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    assert int(headers["Access-Control-Max-Age"]) > 0
