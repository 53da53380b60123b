"""nbval really compares the reference notebooks' stored outputs (nothing is ignored wholesale)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
SANITIZE = REPO / "tests" / "nbval-sanitize.cfg"


def test_sanitizer_keeps_metrics_and_versions() -> None:
    """The sanitize file may hide run ids and ports, never the numbers a lab is about."""
    import re

    rules = re.findall(r"^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(), flags=re.M)
    assert rules, "no sanitize rules parsed"
    sample = "registered churn-classifier version 1: accuracy 0.7883 (n=205) sha256:dfbec59bd7f8"
    for pattern, replacement in rules:
        sample = re.sub(pattern, replacement, sample)
    assert sample == "registered churn-classifier version 1: accuracy 0.7883 (n=205) sha256:dfbec59bd7f8"
    volatile = "run 0123456789abcdef0123456789abcdef at 127.0.0.1:53211 on 2026-11-25T22:29:38Z"
    for pattern, replacement in rules:
        volatile = re.sub(pattern, replacement, volatile)
    assert volatile == "run <RUN_ID> at 127.0.0.1:<PORT> on <TIMESTAMP>"


def test_the_suite_runs_nbval_strictly_over_the_solutions() -> None:
    """`make test` compares every cell (--nbval), not only marked ones (--nbval-lax)."""
    import tomllib

    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "solutions" in options["testpaths"]
    assert "--nbval" in options["addopts"] and "--nbval-lax" not in options["addopts"]
    assert options["addopts"][options["addopts"].index("--nbval-sanitize-with") + 1] == "tests/nbval-sanitize.cfg"


@pytest.mark.slow
def test_a_changed_stored_output_fails_nbval(tmp_path: Path) -> None:
    """A notebook whose stored number differs from what it computes fails under this config,
    even when the output also carries values the sanitize file replaces."""
    cell = nbformat.v4.new_code_cell(
        "print('run 0123456789abcdef0123456789abcdef at 127.0.0.1:5000')\nprint(f'accuracy {0.7883:.4f}')", id="probe"
    )
    cell.execution_count = 1
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="run ffffffffffffffffffffffffffffffff at 127.0.0.1:6123\naccuracy 0.7883\n")]
    good = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(good, tmp_path / "good.ipynb")
    cell.outputs[0].text = cell.outputs[0].text.replace("accuracy 0.7883", "accuracy 0.9999")
    nbformat.write(good, tmp_path / "changed.ipynb")
    shutil.copy(SANITIZE, tmp_path / "sanitize.cfg")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"), "-p", "no:cacheprovider", "-q",
         "-p", "nbval", "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(tmp_path / "sanitize.cfg"),
         "good.ipynb", "changed.ipynb"],
        # nbval alone: the environment's other plugins (schemathesis, hypothesis, ...) play no part.
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert done.returncode == 1, done.stdout[-2000:]
    assert "FAILED changed.ipynb::Cell 0" in done.stdout and "1 failed, 1 passed" in done.stdout, done.stdout[-2000:]
