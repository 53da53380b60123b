"""Student notebooks are generated from the solutions, unsolved labs fail their checks and
the reference solutions pass them all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from scripts.grading import assign, authoring
from scripts.grading.checks import MIME
from scripts.grading.execute import run

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


def _check_results(nb: nbformat.NotebookNode) -> dict[str, dict[str, object]]:
    """Per exercise: earned points from the check records, and whether the check cell errored."""
    results: dict[str, dict[str, object]] = {}
    for cell in nb.cells:
        if authoring.role(cell) != "lab-check":
            continue
        exercise_id = authoring.lab_meta(cell)["exercise"]
        records = [out["data"][MIME] for out in cell.outputs if out.get("output_type") == "display_data" and MIME in out.get("data", {})]
        errored = any(out.get("output_type") == "error" for out in cell.outputs)
        entry = results.setdefault(exercise_id, {"earned": 0.0, "possible": 0.0, "errored": False, "records": 0})
        entry["earned"] = float(entry["earned"]) + sum(float(r["earned"]) for r in records)  # type: ignore[arg-type]
        entry["possible"] = float(entry["possible"]) + sum(float(r["points"]) for r in records)  # type: ignore[arg-type]
        entry["errored"] = bool(entry["errored"]) or errored
        entry["records"] = int(entry["records"]) + len(records)  # type: ignore[call-overload]
    return results


@pytest.mark.slow
@pytest.mark.parametrize("solution", SOLUTIONS, ids=LAB_IDS)
def test_unsolved_lab_fails_every_check_and_solution_passes_all(solution: Path, tmp_path: Path) -> None:
    manifest = json.loads((assign.MANIFESTS / f"{solution.stem}.json").read_text())
    for kind, source in (("lab", REPO / "labs" / solution.name), ("solution", solution)):
        folder = tmp_path / kind
        folder.mkdir()
        shutil.copy(source, folder / source.name)
        executed = run(folder / source.name, allow_errors=(kind == "lab"))
        results = _check_results(executed)
        assert set(results) == set(manifest["exercises"])
        for exercise_id, entry in results.items():
            points = manifest["exercises"][exercise_id]["points"]
            if kind == "lab":
                assert entry["errored"], f"unsolved exercise {exercise_id}: its check cell should fail"
                assert entry["earned"] == 0, f"unsolved exercise {exercise_id} earned {entry['earned']} points"
                assert entry["records"] >= 1, f"exercise {exercise_id}: checks must report, not crash"
            else:
                assert not entry["errored"], f"solution of {exercise_id} fails its checks"
                assert entry["earned"] == entry["possible"] == points, (exercise_id, entry, points)
