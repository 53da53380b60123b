"""Synthetic submissions of Lab 00 built from the lab's own notebooks: full, blank and partial.

Benchmarks time the grader on a class made of these, and the tests build their corpus on
them: the reference solution (every exercise solved), the generated student notebook
(nothing solved) and a solution with its last two exercises reverted to the stubs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]
SOLUTION = REPO / "solutions" / "00-first-model.ipynb"
LAB = REPO / "labs" / "00-first-model.ipynb"


def load(path: Path) -> nbformat.NotebookNode:
    """A notebook, as nbformat 4."""
    return nbformat.read(path, as_version=4)


def cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    """The cell of ``nb`` whose id is ``cell_id``."""
    return next(c for c in nb.cells if c.get("id") == cell_id)


def save(nb: nbformat.NotebookNode, path: Path) -> Path:
    """Write ``nb`` to ``path`` (creating its folder); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def solution(folder: Path) -> Path:
    """Every exercise solved (17/17)."""
    return save(load(SOLUTION), folder / "solution.ipynb")


def blank(folder: Path) -> Path:
    """The student notebook as generated (0/13)."""
    return save(load(LAB), folder / "blank.ipynb")


def partial(folder: Path) -> Path:
    """The solution with exercises 3 and 4 reverted to the stubs."""
    nb, lab = load(SOLUTION), load(LAB)
    for cell_id in ("ex3", "ex4"):
        cell(nb, cell_id).source = cell(lab, cell_id).source
    return save(nb, folder / "partial.ipynb")
