"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from email_service.store.engine import make_engine
from tests.e2e.processes import ApiProcess, WorkerProcess


@pytest.fixture
def engine(environ: dict[str, str]) -> Iterator[Engine]:
    """An engine on this test's database, for looking at what the processes wrote."""
    engine = make_engine(environ["DATABASE_URL"])
    yield engine
    engine.dispose()


@pytest.fixture
def processes() -> Iterator[list[ApiProcess | WorkerProcess]]:
    """Service processes a test started; the ones still running are killed at the end."""
    started: list[ApiProcess | WorkerProcess] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.kill()
