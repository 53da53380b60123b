"""Student notebooks are generated from the solutions and never carry solutions or outputs.

(That an unsolved lab scores 0 and its solution 100 % is proven through the grader itself, in
tests/grading/test_grade.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from scripts.grading import assign, authoring

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = assign.solutions()
LAB_IDS = [path.stem for path in SOLUTIONS]


def test_every_solution_has_a_lab_and_there_are_no_orphans() -> None:
    assert SOLUTIONS, "no reference notebooks found"
    labs = sorted(path.name for path in (REPO / "labs").glob("*.ipynb"))
    assert labs == [path.name for path in SOLUTIONS]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=LAB_IDS)
def test_labs_and_manifests_match_their_solution(solution: Path) -> None:
    stale = assign.drift(assign.build(solution))
    assert not stale, f"{stale} drifted from {solution.name}: run `make labs` and commit the result"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=LAB_IDS)
def test_student_notebook_carries_no_solution_and_no_outputs(solution: Path) -> None:
    lab = nbformat.read(REPO / "labs" / solution.name, as_version=4)
    text = (REPO / "labs" / solution.name).read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    for cell in lab.cells:
        assert authoring.role(cell) != "lab-hidden"
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    stubs = [cell for cell in lab.cells if authoring.role(cell) == "lab-exercise"]
    assert stubs and all("is not done yet" in cell.source for cell in stubs)


@pytest.mark.parametrize("solution", SOLUTIONS, ids=LAB_IDS)
def test_each_stub_raises_once_and_names_what_the_checks_read(solution: Path) -> None:
    """One `raise` per exercise cell, and every variable the exercise's checks read is shown as `name = ...`."""
    nb = authoring.read(solution)
    lab = nbformat.read(REPO / "labs" / solution.name, as_version=4)
    for cell in (cell for cell in lab.cells if authoring.role(cell) == "lab-exercise"):
        assert cell.source.count("raise NotImplementedError") == 1, f"{cell.id} raises more than once"
        exercise_id = str(authoring.lab_meta(cell)["exercise"])
        original = next(c for c in nb.cells if c.get("id") == cell.id).source
        regions = re.findall(r"^# BEGIN SOLUTION\n(.*?)^# END SOLUTION", original, flags=re.M | re.S)  # top level only
        at_top = {name for region in regions for name in authoring.assigned_names(region)}
        for name in sorted(authoring.checked_names(nb.cells, exercise_id) & at_top):
            assert f"{name} = ...  # your code" in cell.source, f"{cell.id}: the stub does not show `{name} = ...`"
