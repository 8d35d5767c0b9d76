"""Paths and setting names shared by the deployment tests (chart, compose file, image)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from email_service.settings import VARIABLES

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "email-service"
COMPOSE_FILE = ROOT / "docker" / "greenmail" / "docker-compose.yml"


def setting_names(*, secret: bool) -> set[str]:
    """The environment names the code reads (secret ones, or the others)."""
    return {variable.env for variable in VARIABLES if variable.secret == secret}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def describe_difference(found: set[str], expected: set[str]) -> str:
    """What a test failure says when two name sets differ."""
    return f"missing: {sorted(expected - found)}; unknown to the code: {sorted(found - expected)}"
