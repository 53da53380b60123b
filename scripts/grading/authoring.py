"""The authoring format of a reference notebook: cell roles, exercises, points, solutions.

Roles are cell tags; grading data lives in ``metadata.lab``; cells are keyed by their
nbformat ids. See the instructor page of the book for the full description.

=====================  =========================================  ================================
tag                    ``metadata.lab``                           in the student notebook
=====================  =========================================  ================================
``lab-setup``          ``{}``                                     kept, locked
``lab-exercise``       ``{"exercise": "00.1"}``                   solution regions become stubs
``lab-check``          ``{"exercise": "00.1", "points": 2}``      kept, locked
``lab-hidden``         ``{"exercise": "00.1", "points": 1}``      removed (grading only)
``lab-checkpoint``     ``{"after": "00.1"}``                      kept, locked
=====================  =========================================  ================================

A check's points are decided by the grader, outside the student's kernel, from the judgments
its ``metadata.lab.judge`` list declares (:mod:`scripts.grading.judge`); the check cell's own
code only gives the student instant feedback.

Inside exercise cells, the solution sits between ``# BEGIN SOLUTION`` and ``# END SOLUTION``
lines; the student version replaces it with a line that raises ``NotImplementedError``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import textwrap
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

ROLES = ("lab-setup", "lab-exercise", "lab-check", "lab-hidden", "lab-checkpoint")
LOCKED_ROLES = ("lab-setup", "lab-check", "lab-checkpoint")
BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION\s*$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
EXERCISE_ID = re.compile(r"^\d{2}\.\d+$")
CHECK_VALUE = re.compile(r"""check\.value\(\s*["']([A-Za-z_]\w*)["']""")


class AuthoringError(ValueError):
    """A reference notebook breaks the authoring format; the message lists every problem."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{path} does not follow the authoring format:\n{listing}")


@dataclass
class Exercise:
    """One graded exercise: its cells and the points its checks are worth."""

    id: str
    cells: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    points: float = 0.0
    hidden_points: float = 0.0


def role(cell: Any) -> str | None:
    """The cell's role tag, if it has exactly one (validation reports several)."""
    tags = [tag for tag in cell.get("metadata", {}).get("tags", []) if tag in ROLES]
    return tags[0] if len(tags) == 1 else None


def lab_meta(cell: Any) -> dict[str, Any]:
    return dict(cell.get("metadata", {}).get("lab", {}))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read(path: str | Path) -> nbformat.NotebookNode:
    """Read a reference notebook, refusing missing or duplicate cell ids.

    nbformat silently replaces missing and duplicate ids with random ones, which would make
    every generated manifest different; so the ids are checked on the raw JSON first.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuthoringError(path, [f"not valid JSON: {exc}"]) from None
    problems = id_problems(raw.get("cells", []))
    if problems:
        raise AuthoringError(path, problems)
    return nbformat.reads(text, as_version=4)


def id_problems(cells: list[Any]) -> list[str]:
    """Cells without an id, and ids used twice."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, cell in enumerate(cells):
        cell_id = cell.get("id")
        if not cell_id:
            problems.append(f"cell {index} has no id; save the notebook with nbformat >= 4.5")
        elif cell_id in seen:
            problems.append(f"cell {index}: duplicate cell id {cell_id!r}")
        seen.add(str(cell_id))
    return problems


def stub_source(source: str, exercise_id: str, names: Collection[str] | None = None) -> str:
    """Replace every solution region with a stub that tells the student what to do.

    A region at the top level of the cell becomes one ``name = ...`` line per variable it
    assigns (when ``names`` is given, only those in it, the variables the exercise's checks
    read, or used by the cell's own code outside the regions),
    so the student sees what to set; the first such region also gets the cell's one
    ``raise NotImplementedError``, before those lines, so that running the unfinished cell
    leaves every variable as it was. A region inside a block (a function body) becomes the
    ``raise`` itself, so calling the unfinished function says it is not done yet.
    """
    scaffold = set(re.findall(r"[A-Za-z_]\w*", _without_regions(source)))
    wanted = set(names or ()) | scaffold
    out: list[str] = []
    region: list[str] = []
    indent = ""
    inside = False
    raised = False
    for line in source.split("\n"):
        start = BEGIN.match(line)
        if start and not inside:
            inside, indent, region = True, start.group("indent"), []
            continue
        if inside:
            if not END.match(line):
                region.append(line)
                continue
            inside = False
            if indent:
                out.append(
                    f'{indent}raise NotImplementedError("{_not_done(exercise_id)}: write the body of this function, then run the check cell below.")'
                )
                continue
            assigned = [name for name in assigned_names("\n".join(region)) if names is None or name in wanted]
            if not raised:  # first, so that running the unfinished cell changes nothing
                action = (
                    "delete this line and replace each ... under it with your code"
                    if assigned
                    else "replace this line with your code"
                )
                out.append(
                    f'raise NotImplementedError("{_not_done(exercise_id)}: {action}, then run the check cell below.")'
                )
                raised = True
            out += [f"{name} = ...  # your code" for name in assigned]
            continue
        out.append(line)
    return "\n".join(out)


def _without_regions(source: str) -> str:
    kept, inside = [], False
    for line in source.split("\n"):
        if BEGIN.match(line):
            inside = True
        elif END.match(line):
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def _not_done(exercise_id: str) -> str:
    return f"Exercise {exercise_id} is not done yet"


def assigned_names(code: str) -> list[str]:
    """Variables a block of top-level code assigns (``=``, ``with ... as``, also inside blocks), in order."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return []
    names: list[str] = []

    def add(node: ast.AST | None) -> None:
        for leaf in [node, *getattr(node, "elts", [])]:
            if isinstance(leaf, ast.Name) and leaf.id not in names:
                names.append(leaf.id)

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, ast.Assign):
                for target in statement.targets:
                    add(target)
            elif isinstance(statement, ast.AnnAssign):
                add(statement.target)
            elif isinstance(statement, ast.With):
                for item in statement.items:
                    add(item.optional_vars)
            if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for field_name in ("body", "orelse", "finalbody"):
                    visit(getattr(statement, field_name, []) or [])
                for handler in getattr(statement, "handlers", []) or []:
                    visit(handler.body)

    visit(tree.body)
    return names


def checked_names(cells: list[Any], exercise_id: str) -> set[str]:
    """Names the checks of ``exercise_id`` read: ``check.value("name")`` and the judges' answers."""
    found: set[str] = set()
    for cell in cells:
        meta = lab_meta(cell)
        if role(cell) not in ("lab-check", "lab-hidden") or str(meta.get("exercise")) != exercise_id:
            continue
        found.update(CHECK_VALUE.findall(cell.get("source", "")))
        for entry in meta.get("judge") or []:
            if not (isinstance(entry, dict) and "answer" in entry):
                continue
            try:
                tree = ast.parse(str(entry["answer"]), mode="eval")
            except SyntaxError:
                continue
            found.update(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))
    return found


def validate(nb: nbformat.NotebookNode, path: str | Path) -> dict[str, Exercise]:
    """Check the authoring rules; return the exercises in notebook order.

    Errors: cells without ids or with duplicate ids, several role tags on one cell, exercise
    cells without a well-formed exercise id or without a solution region, unbalanced solution
    markers, solution markers outside exercise cells, checks without points or for an exercise
    that does not exist, exercises without a check.
    """
    problems: list[str] = id_problems(nb.cells)
    exercises: dict[str, Exercise] = {}
    for index, cell in enumerate(nb.cells):
        where = f"cell {index} (id {cell.get('id')!r})"
        cell_id = cell.get("id")
        tags = [tag for tag in cell.get("metadata", {}).get("tags", []) if tag in ROLES]
        if len(tags) > 1:
            problems.append(f"{where} has several role tags {tags}; give it one")
        cell_role = tags[0] if len(tags) == 1 else None
        meta = lab_meta(cell)
        source = cell.get("source", "")
        markers = [line for line in source.split("\n") if BEGIN.match(line) or END.match(line)]
        if cell_role == "lab-exercise":
            exercise_id = str(meta.get("exercise", ""))
            if not EXERCISE_ID.match(exercise_id):
                problems.append(f"{where}: exercise id {exercise_id!r} must look like '00.1' (lab.exercise)")
                continue
            if not markers:
                problems.append(f"{where}: exercise {exercise_id} has no '# BEGIN SOLUTION' region")
            if not _balanced(source):
                problems.append(f"{where}: unbalanced BEGIN/END SOLUTION markers")
            exercises.setdefault(exercise_id, Exercise(exercise_id)).cells.append(str(cell_id))
        elif markers:
            problems.append(f"{where}: solution markers outside an exercise cell would leak the solution")
        if cell_role in ("lab-check", "lab-hidden"):
            exercise_id = str(meta.get("exercise", ""))
            points = meta.get("points")
            if exercise_id not in exercises:
                problems.append(
                    f"{where}: {cell_role} for exercise {exercise_id!r}, which no exercise cell above defines"
                )
                continue
            if not isinstance(points, (int, float)) or isinstance(points, bool) or points <= 0:
                problems.append(f"{where}: {cell_role} needs positive lab.points, found {points!r}")
                continue
            exercise = exercises[exercise_id]
            problems += [f"{where}: {problem}" for problem in judge_problems(meta.get("judge"), float(points))]
            if cell_role == "lab-check":
                exercise.checks.append(str(cell_id))
                exercise.points += float(points)
            else:
                exercise.hidden_points += float(points)
        if cell_role == "lab-checkpoint" and str(meta.get("after", "")) not in exercises:
            problems.append(f"{where}: checkpoint after unknown exercise {meta.get('after')!r}")
    for exercise in exercises.values():
        if not exercise.checks:
            problems.append(f"exercise {exercise.id} has no lab-check cell")
    if problems:
        raise AuthoringError(path, problems)
    return exercises


def judge_problems(entries: Any, points: float) -> list[str]:
    """What is wrong with a check's ``judge`` list (see :mod:`scripts.grading.judge`)."""
    if not isinstance(entries, list) or not entries:
        return ["needs a lab.judge list: the grader decides points only from declared judgments"]
    problems: list[str] = []
    ids: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            problems.append(f"judgment {entry!r} is not an object")
            continue
        name = entry.get("id")
        if not isinstance(name, str) or not name or name in ids:
            problems.append(f"judgment {entry!r} needs a unique string id")
        ids.add(str(name))
        if ("answer" in entry) == ("fact" in entry):
            problems.append(f"judgment {name!r} needs exactly one of 'answer' (an expression) or 'fact' (a path)")
        if "answer" in entry:
            try:
                compile(str(entry["answer"]), "<answer>", "eval")
            except SyntaxError as exc:
                problems.append(f"judgment {name!r}: answer is not a Python expression ({exc.msg})")
        if "derive" in entry:
            from .derive import DERIVATIONS

            if "answer" not in entry or entry["derive"] not in DERIVATIONS:
                problems.append(f"judgment {name!r}: derive needs an answer and one of {sorted(DERIVATIONS)}")
        if "pick" in entry and ("derive" not in entry or not (isinstance(entry["pick"], list) and entry["pick"])):
            problems.append(f"judgment {name!r}: pick needs derive and a non-empty list of keys")
        if "fact" in entry and not (isinstance(entry["fact"], list) and entry["fact"]):
            problems.append(f"judgment {name!r}: fact must be a non-empty list of keys")
        value = entry.get("points")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            problems.append(f"judgment {name!r} needs positive points")
    total = sum(
        float(e.get("points", 0)) for e in entries if isinstance(e, dict) and isinstance(e.get("points"), (int, float))
    )
    if not problems and abs(total - points) > 1e-9:
        problems.append(f"its judgments are worth {total:g} points but the cell's lab.points is {points:g}")
    return problems


def _balanced(source: str) -> bool:
    depth = 0
    for line in source.split("\n"):
        if BEGIN.match(line):
            depth += 1
            if depth > 1:
                return False
        elif END.match(line):
            depth -= 1
            if depth < 0:
                return False
    return depth == 0
