"""docs/operations.md names the real metrics and settings, and README.md links to it."""

from __future__ import annotations

import re

from email_service.metrics import METRICS
from email_service.settings import VARIABLES
from tests.deployment import ROOT, describe_difference

OPERATIONS = ROOT / "docs" / "operations.md"
#: Names in the guide that look like metrics but are tables.
TABLES = {"email_service_workers"}


def operations_text() -> str:
    return OPERATIONS.read_text(encoding="utf-8")


def test_every_metric_is_described_and_no_other() -> None:
    mentioned = set(re.findall(r"\bemail_service_[a-z_]+\b", operations_text())) - TABLES
    assert mentioned == set(METRICS), describe_difference(mentioned, set(METRICS))


def test_old_service_variables_listed_are_read_by_the_code() -> None:
    section = operations_text().split("## Moving over from the TypeScript service", 1)[1]
    listed = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))
    assert len(listed) >= 10
    known = {variable.env for variable in VARIABLES}
    assert listed <= known, f"not read by the code: {sorted(listed - known)}"


def test_every_setting_named_in_the_guide_exists() -> None:
    named = set(re.findall(r"`((?:IMAP|EMAIL_SERVICE)_[A-Z_]+)", operations_text()))
    known = {variable.env for variable in VARIABLES}
    # `IMAP_RECONNECT_BASE_MS`, `_MAX_MS`: a shortened sibling is not a name of its own.
    assert named - known == set(), sorted(named - known)


def test_readme_links_the_guide() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/operations.md)" in readme
    assert "scripts/demo    #" in readme and "scripts/test    #" in readme
