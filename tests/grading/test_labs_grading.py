"""Every lab through the grader: the reference solution scores 100 % and the generated student
notebook 0, without crashing the grader. (Lab 00 is proven by the corpus in test_grade.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scripts.grading import assign
from scripts.grading.grade import grade
from tests.grading.corpus import CASES

REPO = Path(__file__).resolve().parents[2]

# Lab 00's solution and student notebook are in the corpus above (carol/..., blank.ipynb).
OTHER_LABS = [path for path in assign.solutions() if not path.name.startswith("00-")]


def test_corpus_covers_lab_00_solution_and_student_notebook() -> None:
    names = {case.name: case for case in CASES}
    assert names["carol/00-first-model.ipynb"].scores == {"00.1": 3, "00.2": 7, "00.3": 3, "00.4": 5}
    assert names["blank.ipynb"].scores is None


@pytest.mark.slow
@pytest.mark.parametrize("solution", OTHER_LABS, ids=[p.stem for p in OTHER_LABS])
def test_solution_scores_full_marks_and_student_notebook_zero(solution: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(solution, folder / "solution.ipynb")
    shutil.copy(REPO / "labs" / solution.name, folder / "student.ipynb")
    rows = {row.submission: row for row in grade(solution.name[:2], [folder], tmp_path / "out", jobs=2)}
    reference, student = rows["in/solution.ipynb"], rows["in/student.ipynb"]
    assert (reference.total, reference.status, reference.flags) == (reference.max, "ok", []), reference
    assert (student.total, student.status, student.flags) == (0, "ok", []), student
    assert all(check["checks"] for check in student.checks), "every check cell must report, not crash"


@pytest.mark.parametrize("solution", assign.solutions(), ids=[p.stem for p in assign.solutions()])
def test_answer_keys_were_recorded_for_the_current_manifests(solution: Path) -> None:
    from scripts.grading.grade import manifest_for
    from scripts.grading.record import key_path, manifest_sha

    manifest = manifest_for(solution.stem)
    key = json.loads(key_path(manifest).read_text())
    assert key["manifest_sha256"] == manifest_sha(manifest), (
        f"{key_path(manifest).name} is older than its manifest: run `python -m scripts.grading record {solution.name[:2]}`"
    )


def test_no_student_notebook_carries_an_answer_key() -> None:
    for lab in (REPO / "labs").glob("*.ipynb"):
        text = lab.read_text()
        assert "b64decode" not in text and "zlib" not in text, lab.name
        for key in (REPO / "scripts" / "grading" / "manifests").glob("*.expected.json"):
            assert key.name not in text


