"""nbval really compares the reference notebooks' stored outputs (nothing is ignored wholesale)."""

from __future__ import annotations

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


@pytest.mark.slow
def test_a_changed_stored_output_fails_nbval(tmp_path: Path) -> None:
    source = REPO / "solutions" / "00-first-model.ipynb"
    nb = nbformat.read(source, as_version=4)
    target = next(cell for cell in nb.cells if cell.get("id") == "train-v1")
    stream = next(out for out in target.outputs if out.get("name") == "stdout")
    assert "accuracy 0.7883" in stream.text
    stream.text = stream.text.replace("accuracy 0.7883", "accuracy 0.9999")
    nbformat.write(nb, tmp_path / source.name)
    shutil.copy(SANITIZE, tmp_path / "sanitize.cfg")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"), "-p", "no:cacheprovider", "-q",
         "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(tmp_path / "sanitize.cfg"), source.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1, done.stdout[-2000:]
    assert "1 failed, 15 passed" in done.stdout, "exactly the edited cell must fail"
