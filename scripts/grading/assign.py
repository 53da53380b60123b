"""Generate student notebooks (``labs/``) and grading manifests from reference notebooks.

``solutions/*.ipynb`` are the single source. For each one, :func:`build` produces:

* the student notebook: solution regions replaced by stubs, held-out (``lab-hidden``) cells
  removed, all outputs and execution counts cleared, setup/check/checkpoint cells marked
  read-only;
* the grading manifest: the canonical source and SHA-256 of every locked cell (so a grader
  can restore edited or deleted checks) and the points of every exercise.

``python -m scripts.grading assign`` writes them; ``--check`` only compares and fails when the
committed files drifted from the solutions.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from . import authoring

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"
MANIFESTS = REPO / "scripts" / "grading" / "manifests"


@dataclass(frozen=True)
class Generated:
    """What one reference notebook generates, as file texts ready to write or compare."""

    solution: Path
    lab_path: Path
    lab_text: str
    manifest_path: Path
    manifest_text: str


def lab_id(path: Path) -> str:
    """``solutions/00-first-model.ipynb`` -> ``"00"``."""
    return path.name.split("-", 1)[0]


def student_notebook(nb: nbformat.NotebookNode, exercises: dict[str, authoring.Exercise]) -> nbformat.NotebookNode:
    """The student version of a validated reference notebook."""
    student = copy.deepcopy(nb)
    cells = []
    for cell in student.cells:
        cell_role = authoring.role(cell)
        if cell_role == "lab-hidden":
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        if cell_role == "lab-exercise":
            exercise_id = str(authoring.lab_meta(cell)["exercise"])
            cell.source = authoring.stub_source(
                cell.source, exercise_id, authoring.checked_names(nb.cells, exercise_id)
            )
        if cell_role in authoring.LOCKED_ROLES:
            cell.metadata["editable"] = False
            cell.metadata["deletable"] = False
        cells.append(cell)
    student.cells = cells
    return student


def manifest(nb: nbformat.NotebookNode, exercises: dict[str, authoring.Exercise], source: Path) -> dict[str, Any]:
    """Canonical locked cells (source, sha256, order) and points per exercise."""
    cells = []
    hidden = []
    previous: str | None = None
    for cell in nb.cells:
        cell_role = authoring.role(cell)
        if cell_role == "lab-hidden":
            meta = authoring.lab_meta(cell)
            hidden.append(
                {
                    "id": cell.id,
                    "exercise": meta["exercise"],
                    "points": meta["points"],
                    "after": previous,
                    "source": cell.source,
                    "hint": meta.get("hint", ""),
                    "judge": meta.get("judge", []),
                }
            )
            continue
        entry: dict[str, Any] = {"id": cell.id, "type": cell.cell_type, "role": cell_role or "text", "after": previous}
        meta = authoring.lab_meta(cell)
        if "exercise" in meta:
            entry["exercise"] = meta["exercise"]
        if cell_role in authoring.LOCKED_ROLES:
            entry["sha256"] = authoring.sha256(cell.source)
            entry["source"] = cell.source
            entry["tags"] = list(cell.metadata.get("tags", []))
            entry["lab"] = meta
        cells.append(entry)
        previous = cell.id
    return {
        "lab": lab_id(source),
        "notebook": source.name,
        "exercises": {
            exercise.id: {
                "points": exercise.points + exercise.hidden_points,
                "public_points": exercise.points,
                "checks": exercise.checks,
                "cells": exercise.cells,
            }
            for exercise in exercises.values()
        },
        "max_points": sum(exercise.points + exercise.hidden_points for exercise in exercises.values()),
        "cells": cells,
        "hidden": hidden,
    }


def build(solution: Path, labs: Path = LABS, manifests: Path = MANIFESTS) -> Generated:
    """Validate one reference notebook and render its student notebook and manifest."""
    nb = authoring.read(solution)
    exercises = authoring.validate(nb, solution)
    student = student_notebook(nb, exercises)
    return Generated(
        solution=solution,
        lab_path=labs / solution.name,
        lab_text=nbformat.writes(student) + "\n",
        manifest_path=manifests / f"{solution.stem}.json",
        manifest_text=json.dumps(manifest(nb, exercises, solution), indent=1, sort_keys=True, ensure_ascii=False)
        + "\n",
    )


def solutions(folder: Path = SOLUTIONS) -> list[Path]:
    return sorted(folder.glob("[0-9][0-9]-*.ipynb"))


def drift(generated: Generated) -> list[str]:
    """Files whose committed text differs from what the solution generates."""
    stale = []
    for path, text in ((generated.lab_path, generated.lab_text), (generated.manifest_path, generated.manifest_text)):
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path))
    return stale


def write(generated: Generated) -> list[Path]:
    """Write the generated files that changed; return their paths."""
    written = []
    for path, text in ((generated.lab_path, generated.lab_text), (generated.manifest_path, generated.manifest_text)):
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written
