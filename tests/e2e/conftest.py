"""Fixtures for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from email_service.store.engine import make_engine


@pytest.fixture
def engine(environ: dict[str, str]) -> Iterator[Engine]:
    """An engine on this test's database, for looking at what the processes wrote."""
    engine = make_engine(environ["DATABASE_URL"])
    yield engine
    engine.dispose()
