"""README's first command: the demo brings everything up, shows the events, and cleans up."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_shows_every_sample_event_and_cleans_up() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "EMAIL_SERVICE_SECRET_KEYS"}
    }
    before = set(Path(tempfile.gettempdir()).glob("email-service-demo-*"))
    result = subprocess.run(
        [sys.executable, "-m", "email_service", "demo", "--exit-after-samples"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for number in range(1, 5):
        assert f"[sample {number}, on the stream" in result.stdout
    assert '"event_name": "INBOUND_EMAIL_RECEIVED"' in result.stdout
    assert "Traceback" not in result.stderr
    leftovers = set(Path(tempfile.gettempdir()).glob("email-service-demo-*")) - before
    assert leftovers == set(), "the demo left its temporary directory behind"
