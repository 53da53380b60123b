"""Every lab through the grader: the reference solution scores 100 % and the generated student
notebook 0, without crashing the grader. (Lab 00 is proven by the corpus in test_grading.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scripts.grading import assign
from scripts.grading.grade import grade
from tests.grading.corpus import CASES

REPO = Path(__file__).resolve().parents[1]

# Lab 00's solution and student notebook are in the corpus above (carol/..., blank.ipynb).
OTHER_LABS = [path for path in assign.solutions() if not path.name.startswith("00-")]


def test_corpus_covers_lab_00_solution_and_student_notebook() -> None:
    names = {case.name: case for case in CASES}
    assert names["carol/00-first-model.ipynb"].scores == {"00.1": 3, "00.2": 3, "00.3": 3, "00.4": 5}
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


