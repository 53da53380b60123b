"""The authoring format and the check helper: validation errors, stubs, teaching checks."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from scripts.grading import assign, authoring
from scripts.grading.checks import CheckFailed, exercise


def _cell(cell_id: str, source: str, tag: str | None = None, **lab) -> nbformat.NotebookNode:
    cell = new_code_cell(source, id=cell_id)
    if tag:
        cell.metadata["tags"] = [tag]
    if lab or tag:
        cell.metadata["lab"] = lab
    return cell


JUDGE = [{"id": "a", "what": "y", "points": 2, "answer": "y"}]


def _valid_cells() -> list[nbformat.NotebookNode]:
    return [
        new_markdown_cell("# Lab 99", id="title"),
        _cell("setup", "x = 1", "lab-setup"),
        _cell("ex", "# BEGIN SOLUTION\ny = x + 1\n# END SOLUTION\nprint(y)", "lab-exercise", exercise="99.1"),
        _cell("ex-check", "assert y == 2", "lab-check", exercise="99.1", points=2, judge=JUDGE),
        _cell("ex-hidden", "assert y > 0", "lab-hidden", exercise="99.1", points=1,
              judge=[{"id": "h", "points": 1, "answer": "y > 0"}]),
    ]


def test_valid_notebook_gives_exercises_with_points() -> None:
    exercises = authoring.validate(new_notebook(cells=_valid_cells()), "lab.ipynb")
    assert list(exercises) == ["99.1"]
    assert exercises["99.1"].points == 2 and exercises["99.1"].hidden_points == 1
    assert exercises["99.1"].checks == ["ex-check"]


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda cells: cells[3].metadata["lab"].pop("points"), "needs positive lab.points"),
        (lambda cells: cells[3].metadata["lab"].update(exercise="99.7"), "which no exercise cell above defines"),
        (lambda cells: cells.pop(3), "exercise 99.1 has no lab-check cell"),
        (lambda cells: cells[1].update(source="# BEGIN SOLUTION\nx = 1\n# END SOLUTION"), "outside an exercise cell"),
        (lambda cells: cells[2].update(source="# BEGIN SOLUTION\ny = 2"), "unbalanced"),
        (lambda cells: cells[2].update(source="y = 2"), "has no '# BEGIN SOLUTION' region"),
        (lambda cells: cells[2].metadata["lab"].update(exercise="one"), "must look like '00.1'"),
        (lambda cells: cells[1].metadata.update(tags=["lab-setup", "lab-check"]), "several role tags"),
        (lambda cells: cells[3].metadata["lab"].pop("judge"), "needs a lab.judge list"),
        (lambda cells: cells[3].metadata["lab"]["judge"][0].update(points=1), "worth 1 points but the cell's lab.points is 2"),
        (lambda cells: cells[3].metadata["lab"]["judge"][0].update(fact=["m"]), "exactly one of 'answer'"),
        (lambda cells: cells[3].metadata["lab"]["judge"][0].update(answer="y ="), "not a Python expression"),
    ],
)
def test_authoring_errors_are_reported(mutate, problem: str) -> None:
    cells = _valid_cells()
    mutate(cells)
    with pytest.raises(authoring.AuthoringError) as caught:
        authoring.validate(new_notebook(cells=cells), "lab.ipynb")
    assert any(problem in message for message in caught.value.problems), caught.value.problems


def test_duplicate_and_missing_ids_are_refused_before_nbformat_repairs_them(tmp_path) -> None:
    raw = nbformat.v4.new_notebook(cells=_valid_cells())
    raw_cells = [dict(cell) for cell in raw.cells]
    raw_cells.append({**raw_cells[2], "id": "ex"})
    raw_cells.append({key: value for key, value in raw_cells[1].items() if key != "id"})
    path = tmp_path / "99-dup.ipynb"
    path.write_text(__import__("json").dumps({**raw, "cells": raw_cells}))
    with pytest.raises(authoring.AuthoringError) as caught:
        authoring.read(path)
    assert "cell 5: duplicate cell id 'ex'" in caught.value.problems
    assert "cell 6 has no id; save the notebook with nbformat >= 4.5" in caught.value.problems


def test_student_notebook_stubs_solutions_drops_hidden_clears_outputs_and_locks(tmp_path) -> None:
    nb = new_notebook(cells=_valid_cells())
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nb.cells[2].execution_count = 3
    path = tmp_path / "99-demo.ipynb"
    nbformat.write(nb, path)
    generated = assign.build(path, labs=tmp_path / "labs", manifests=tmp_path / "manifests")
    student = nbformat.reads(generated.lab_text, as_version=4)
    ids = [cell.id for cell in student.cells]
    assert "ex-hidden" not in ids
    stub = student.cells[ids.index("ex")]
    assert stub.source == (
        'raise NotImplementedError("Exercise 99.1 is not done yet: delete this line and replace each ... under it '
        'with your code, then run the check cell below.")\n'
        "y = ...  # your code\nprint(y)"
    )
    assert stub.outputs == [] and stub.execution_count is None
    check = student.cells[ids.index("ex-check")]
    assert check.metadata["editable"] is False and check.metadata["deletable"] is False
    manifest = __import__("json").loads(generated.manifest_text)
    assert manifest["max_points"] == 3 and manifest["lab"] == "99"  # 2 public + 1 held-out
    assert manifest["exercises"]["99.1"]["public_points"] == 2
    assert [check["id"] for check in manifest["hidden"]] == ["ex-hidden"] and manifest["hidden"][0]["after"] == "ex-check"
    locked = {cell["id"]: cell for cell in manifest["cells"] if "sha256" in cell}
    assert set(locked) == {"setup", "ex-check"}
    assert locked["ex-check"]["sha256"] == authoring.sha256("assert y == 2")
    assert "BEGIN SOLUTION" not in generated.lab_text and "ex-hidden" not in generated.lab_text


def test_stubs_name_what_to_set_and_raise_once_per_cell() -> None:
    source = (
        "# Exercise 99.2\n"
        "def helper(x):\n"
        "    # BEGIN SOLUTION\n"
        "    return x + 1\n"
        "    # END SOLUTION\n"
        "# BEGIN SOLUTION\n"
        "scratch = [1, 2]\n"
        "with open('f') as handle:\n"
        "    answer, other = helper(1), 2\n"
        "# END SOLUTION\n"
        "# BEGIN SOLUTION\n"
        "second = answer\n"
        "# END SOLUTION\n"
        "print(other)"
    )
    stub = authoring.stub_source(source, "99.2", names={"answer", "second"})
    lines = stub.split("\n")
    assert lines[2].startswith('    raise NotImplementedError("Exercise 99.2 is not done yet: write the body')
    assert lines[3].startswith('raise NotImplementedError("Exercise 99.2 is not done yet: delete this line')
    assert lines[4:6] == ["answer = ...  # your code", "other = ...  # your code"]
    assert lines[6:] == ["second = ...  # your code", "print(other)"], "scratch is neither checked nor used"
    assert stub.count("raise NotImplementedError") == 2  # the function body's, and the cell's one
    assert "BEGIN SOLUTION" not in stub and "scratch" not in stub and "helper(1)" not in stub
    assert authoring.assigned_names("x = (\n") == []
    checked = authoring.checked_names(
        [nbformat.v4.new_code_cell('check.value("answer")', metadata={"tags": ["lab-check"], "lab": {
            "exercise": "99.2", "points": 1, "judge": [{"id": "a", "points": 1, "answer": "int(second)"}]}})],
        "99.2",
    )
    assert {"answer", "second"} <= checked


def test_found_may_be_computed_only_when_a_check_fails(capsys: pytest.CaptureFixture[str]) -> None:
    calls = []
    with pytest.raises(CheckFailed):
        with exercise("99.4", {}) as check:
            check.that(True, "passes", found=lambda: calls.append("called"))
            check.that(False, "fails", expected="1", found=lambda: 2)
            check.that(False, "unreadable", found=lambda: {}["key"])
    out = capsys.readouterr().out
    assert calls == [] and "fails — expected 1; found 2" in out and "found unreadable (KeyError: 'key')" in out


def test_a_placeholder_counts_as_not_defined(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CheckFailed):
        with exercise("99.3", {"result": ...}) as check:
            check.equal(check.value("result"), 1, "the result")
    assert "`result` is not defined yet" in capsys.readouterr().out


def test_checks_print_teaching_lines_and_fail_the_cell(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = {"answer": 41}
    with pytest.raises(CheckFailed, match="1 of 3 check"):
        with exercise("99.1", namespace) as check:
            check.equal(check.value("answer"), 42, "the answer", points=2, why="six times seven", hint="multiply")
            check.close(0.5001, 0.5, "a rate", tol=1e-3)
            check.that(lambda: True, "always true")
    out = capsys.readouterr().out
    assert "✗ [99.1-a] the answer: expected 42 (six times seven), found 41" in out
    assert "hint: multiply" in out and "(0/2)" in out
    assert "✓ [99.1-b] a rate is 0.5001  (1/1)" in out
    assert "Exercise 99.1: 2/4 points" in out


def test_missing_variables_and_exceptions_become_failed_checks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CheckFailed):
        with exercise("99.2", {}) as check:
            check.equal(check.value("result"), 1, "result")
            check.that(lambda: undefined_name > 0, "a callable that raises")  # type: ignore[name-defined]  # noqa: F821
            check.is_instance(check.value("frame"), dict, "frame")
    out = capsys.readouterr().out
    assert "`result` is not defined yet — complete Exercise 99.2" in out
    assert "could not be checked (`undefined_name` is not defined yet)" in out
    assert out.count("✗") == 3
    with pytest.raises(CheckFailed, match="1 of 1"):
        with exercise("99.3", {}):
            raise KeyError("boom")
    assert "the checks stopped early: KeyError" in capsys.readouterr().out


def test_all_passing_checks_do_not_raise(capsys: pytest.CaptureFixture[str]) -> None:
    with exercise("99.4", {"x": 3}) as check:
        check.equal(check.value("x"), 3, "x")
    assert "Exercise 99.4: 1/1 points" in capsys.readouterr().out
