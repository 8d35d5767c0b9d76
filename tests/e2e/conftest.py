"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_api_process import ApiProcess
from tests.e2e.test_worker_process import WorkerProcess


@pytest.fixture
def processes() -> Iterator[list[ApiProcess | WorkerProcess]]:
    """Service processes a test started; the ones still running are killed at the end."""
    started: list[ApiProcess | WorkerProcess] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.kill()
