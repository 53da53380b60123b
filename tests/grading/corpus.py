"""A corpus of Lab 00 submissions, each with exactly the scores and status it must get.

The notebooks are derived from the current reference solution and student notebook when the
tests run, so the corpus follows the lab; the expected scores below are written out by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scripts.grading.samples import LAB, SOLUTION, blank, cell, load, partial, save


@dataclass(frozen=True)
class Case:
    name: str
    scores: dict[str, float] | None  # None: every exercise 0
    status: str
    flags: tuple[str, ...] = ()
    build: Callable[[Path], Path] = field(default=lambda folder: folder, repr=False)


_load, _cell, _save = load, cell, save


def wrong(folder: Path) -> Path:
    nb = _load(SOLUTION)
    ex1 = _cell(nb, "ex1")
    ex1.source = ex1.source.replace('hardest_slice = table["accuracy"].idxmin()', 'hardest_slice = "consumer"')
    ex1.source = ex1.source.replace('table.loc[hardest_slice, "accuracy"]', 'table["accuracy"].min()')
    ex2 = _cell(nb, "ex2")  # "newer is better": the secret multiple choice costs its 2 points
    ex2.source = ex2.source.replace('answer_second = "C"', 'answer_second = "A"')
    ex4 = _cell(nb, "ex4")
    ex4.source = ex4.source.replace("best = max(", "best = min(")
    return _save(nb, folder / "wrong.ipynb")


def tampered(folder: Path) -> Path:
    nb = _load(LAB)
    _cell(nb, "ex1-check").source = 'with exercise("00.1") as check:\n    check.that(True, "free points", points=3)'
    return _save(nb, folder / "tampered.ipynb")


def deleted_check(folder: Path) -> Path:
    nb = _load(LAB)
    nb.cells = [cell for cell in nb.cells if cell.get("id") != "ex2-check"]
    return _save(nb, folder / "deleted-check.ipynb")


def skip_markers(folder: Path) -> Path:
    nb = _load(LAB)
    for cell_id in ("ex1-check", "ex2-check"):
        _cell(nb, cell_id).metadata["tags"] = ["lab-check", "nbval-skip", "raises-exception"]
    ex1 = _cell(nb, "ex1")
    ex1.source = "# NBVAL_SKIP\n# NBVAL_RAISES_EXCEPTION\n" + ex1.source
    return _save(nb, folder / "skip-markers.ipynb")


def suppressed_traceback(folder: Path) -> Path:
    """Unsolved, but every traceback is suppressed: a naive nbval run would pass every cell."""
    nb = _load(LAB)
    setup = _cell(nb, "data-head")
    setup.source = "get_ipython().showtraceback = lambda *args, **kwargs: None\n" + setup.source
    return _save(nb, folder / "suppressed-traceback.ipynb")


def infinite_loop(folder: Path) -> Path:
    nb = _load(SOLUTION)
    # Sleeps rather than spins, so the test does not burn a core while it waits for the timeout.
    _cell(nb, "ex3").source = "# Exercise 00.3\nimport time\nwhile True:\n    time.sleep(0.05)"
    return _save(nb, folder / "infinite-loop.ipynb")


def kernel_crash(folder: Path) -> Path:
    nb = _load(SOLUTION)
    _cell(nb, "ex3").source = "# Exercise 00.3\nimport os\nos._exit(1)  # the kernel process dies"
    return _save(nb, folder / "kernel-crash.ipynb")


def syntax_error(folder: Path) -> Path:
    nb = _load(SOLUTION)
    _cell(nb, "ex2").source = "# Exercise 00.2\nsecond = train.train_and_log(paths['v1'],"
    return _save(nb, folder / "syntax-error.ipynb")


def corrupted(folder: Path) -> Path:
    path = folder / "corrupted.ipynb"
    path.write_text(SOLUTION.read_text()[:5000])
    return path


def empty(folder: Path) -> Path:
    path = folder / "empty.ipynb"
    path.write_text("")
    return path


def old_format(folder: Path) -> Path:
    path = folder / "old-format.ipynb"
    path.write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}))
    return path


def not_a_notebook(folder: Path) -> Path:
    path = folder / "essay.txt"
    path.write_text("I did the lab in my head.\n")
    return path


def shipped_conftest(folder: Path) -> Path:
    """A folder submission with files that would hijack a naive grader."""
    sub = folder / "carol"
    _save(_load(SOLUTION), sub / "00-first-model.ipynb")
    (sub / "conftest.py").write_text("def pytest_collection_modifyitems(items):\n    items.clear()\n")
    (sub / "pytest.ini").write_text("[pytest]\naddopts = -p no:nbval\n")
    (sub / "mlflow.py").write_text("raise ImportError('hijacked')\n")
    (sub / "sitecustomize.py").write_text("import os\nos._exit(3)\n")
    return sub


def write_private(folder: Path) -> Path:
    """An instructor's held-out check for exercise 00.4 (1 point: the alias exists at all)."""
    folder.mkdir(parents=True, exist_ok=True)
    check = {
        "id": "00.4-h1", "exercise": "00.4", "points": 1, "after": "ex4-check",
        "hint": "an alias named champion must exist in the registry",
        "fact": ["churn-classifier", "aliases", "champion"], "op": "exists",
    }
    (folder / "00-first-model.hidden.json").write_text(json.dumps({"checks": [check]}))
    return folder


# Scores include the held-out check of write_private (00.4 is worth 5).
FULL = {"00.1": 3, "00.2": 7, "00.3": 3, "00.4": 5}
CASES: list[Case] = [
    Case("blank.ipynb", None, "ok", (), blank),
    Case("partial.ipynb", {"00.1": 3, "00.2": 7, "00.3": 0, "00.4": 0}, "ok", (), partial),
    Case("wrong.ipynb", {"00.1": 1, "00.2": 5, "00.3": 3, "00.4": 1}, "ok", (), wrong),
    Case("tampered.ipynb", None, "ok", ("tampered",), tampered),
    Case("deleted-check.ipynb", None, "ok", ("restored:ex2-check", "tampered"), deleted_check),
    Case("skip-markers.ipynb", None, "ok", ("ignored_markers",), skip_markers),
    Case("suppressed-traceback.ipynb", None, "ok", ("suppressed_error", "suspicious"), suppressed_traceback),
    Case("infinite-loop.ipynb", {"00.1": 3, "00.2": 7, "00.3": 0, "00.4": 5}, "timeout", ("timeout@ex3",), infinite_loop),
    # The grader notices the dead kernel at once, restarts it, replays the cells that had run,
    # and grades the exercises after the crash.
    Case("kernel-crash.ipynb", {"00.1": 3, "00.2": 7, "00.3": 0, "00.4": 5}, "kernel_died", ("kernel_died@ex3",), kernel_crash),
    # The checkpoint after 00.2 registers the course's hgb version, so 00.4 no longer fails with 00.2.
    Case("syntax-error.ipynb", {"00.1": 3, "00.2": 0, "00.3": 3, "00.4": FULL["00.4"]}, "ok", (), syntax_error),
    Case("corrupted.ipynb", None, "invalid_json", (), corrupted),
    Case("empty.ipynb", None, "empty", (), empty),
    Case("old-format.ipynb", None, "old_nbformat", (), old_format),
    Case("essay.txt", None, "not_a_notebook", (), not_a_notebook),
    # The reference solution, shipped in a folder with files that would hijack a naive grader:
    # it must score full marks (this is also the "solution scores 100 %" proof for Lab 00).
    Case("carol/00-first-model.ipynb", FULL, "ok", (), shipped_conftest),
]
