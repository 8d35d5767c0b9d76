"""The Dockerfile installs the package with the same script as scripts/bootstrap.sh (the
tests' .venv), in a build stage, and runs it as a non-root user with a stdlib health check.
No Docker engine here: the Dockerfile is parsed."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass

import pytest

from tests.deployment import ROOT

INSTALL_SCRIPT = "scripts/install-package.sh"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Instructions grouped by stage (each FROM starts one); ARGs before the first FROM dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # Docker skips these inside continued lines too
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def stages() -> list[list[Instruction]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def arguments(stage: list[Instruction], keyword: str) -> list[str]:
    return [i.arguments for i in stage if i.keyword == keyword]


def test_parser_joins_continued_lines_and_groups_stages() -> None:
    parsed = parse_dockerfile("ARG X=1\nFROM a AS b\n# note\nRUN one \\\n    two\nFROM b\nUSER 1\n")
    assert parsed == [
        [Instruction("FROM", "a AS b"), Instruction("RUN", "one two")],
        [Instruction("FROM", "b"), Instruction("USER", "1")],
    ]


def test_package_is_installed_by_the_shared_script_without_the_dev_extra() -> None:
    build, *_ = stages()
    installs = [run for run in arguments(build, "RUN") if INSTALL_SCRIPT in run]
    assert len(installs) == 1, f"expected one RUN of {INSTALL_SCRIPT}, found {installs}"
    words = shlex.split(installs[0])
    assert words[words.index(INSTALL_SCRIPT) + 1 :] == ["/opt/venv/bin/python", "/src"]
    assert any(INSTALL_SCRIPT in copy for copy in arguments(build, "COPY"))
    for stage in stages():
        for run in arguments(stage, "RUN"):
            assert "pip install" not in run, f"install through {INSTALL_SCRIPT} only: {run}"


def test_bootstrap_installs_the_tests_venv_with_the_same_script() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")
    calls = [line for line in bootstrap.splitlines() if INSTALL_SCRIPT.split("/")[1] in line]
    assert len(calls) == 1 and calls[0].rstrip().endswith("--dev >&2"), calls
    assert "pip install" not in bootstrap


def test_final_stage_is_slim_non_root_and_checks_health() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage: build tools stay in the build stage"
    final = all_stages[-1]
    assert arguments(final, "FROM") == ["${PYTHON_IMAGE}"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert any(copy.startswith("--from=build /opt/venv") for copy in arguments(final, "COPY"))
    assert not any("apt-get" in run or "pip" in run for run in arguments(final, "RUN"))
    (user,) = arguments(final, "USER")
    assert user.split(":")[0] not in {"0", "root"}
    (healthcheck,) = arguments(final, "HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[0] == "python" and command[1].endswith("healthcheck.py")
    assert json.loads(arguments(final, "CMD")[0]) == ["email-service", "worker"]


def test_healthcheck_script_asks_the_health_endpoint_with_the_stdlib() -> None:
    source = (ROOT / "docker" / "healthcheck.py").read_text(encoding="utf-8")
    imports = {line.split()[1] for line in source.splitlines() if line.startswith("import ")}
    assert imports <= {"os", "sys", "urllib.request"}
    assert "/health" in source


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = {
        source.split("/")[0]
        for stage in stages()
        for copy in arguments(stage, "COPY")
        if not copy.startswith("--from")
        for source in copy.split()[:-1]
    }
    assert copied and not copied & ignored, copied & ignored
    assert {".git", ".venv", "tests"} <= ignored


@pytest.mark.parametrize(
    "argv", [[], ["python3"], ["python3", ".", "--editable"]], ids=["none", "one", "bad-flag"]
)
def test_install_script_refuses_wrong_arguments(argv: list[str]) -> None:
    result = subprocess.run(
        ["sh", str(ROOT / INSTALL_SCRIPT), *argv], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "usage:" in result.stderr
