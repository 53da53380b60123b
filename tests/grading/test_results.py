"""Result files, the gradebook rebuilt from them, --resume, message caps and CSV neutralising."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from scripts.grading import results
from scripts.grading.grade import grade


def test_formula_cells_are_neutralised_and_other_values_kept() -> None:
    for text in ("=HYPERLINK(\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert results.neutralise(text) == "'" + text
    assert results.neutralise("alice.ipynb") == "alice.ipynb" and results.neutralise(3.0) == 3.0


def test_messages_are_capped_and_say_so() -> None:
    assert results.cap("short") == "short"
    capped = results.cap("x" * 10_000)
    assert capped.startswith("x" * results.MAX_MESSAGE) and capped.endswith("[cut: 5904 more characters]")


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    results.write_atomic(tmp_path / "a.json", "1")
    results.write_atomic(tmp_path / "a.json", "2")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"] and (tmp_path / "a.json").read_text() == "2"


def _files(folder: Path) -> dict[str, Path]:
    for name, text in {"empty.ipynb": "", "broken.ipynb": "{", "list.ipynb": "[]"}.items():
        (folder / name).write_text(text)
    return {path.name: path for path in folder.iterdir()}


def test_resume_regrades_only_what_is_missing_and_rebuilds_the_gradebook(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    _files(inbox)
    out = tmp_path / "out"
    grade("00", [inbox], out)
    stored = sorted((out / "results").glob("*.json"))
    assert len(stored) == 3
    kept = {p.name: p.stat().st_mtime_ns for p in stored}
    lost = stored[0]
    lost.unlink()  # as if the batch had been killed before this one finished
    (out / "gradebook.csv").write_text("damaged")
    rows = grade("00", [inbox], out, resume=True)
    assert len(rows) == 3 and lost.exists()
    assert all(p.stat().st_mtime_ns == kept[p.name] for p in stored[1:]), "finished results are kept"
    with (out / "gradebook.csv").open() as handle:
        assert {row["submission"] for row in csv.DictReader(handle)} == {"in/empty.ipynb", "in/broken.ipynb", "in/list.ipynb"}
    (inbox / "empty.ipynb").write_text("{}")  # a changed file is regraded
    grade("00", [inbox], out, resume=True)
    row = json.loads(next((out / "results").glob("in_empty.ipynb-*.json")).read_text())
    assert row["status"] == "not_a_notebook"


def test_symlinks_and_fifos_are_refused_with_a_status(tmp_path: Path) -> None:
    import os

    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "real.txt").write_text("x")
    os.symlink(inbox / "real.txt", inbox / "link.ipynb")
    os.mkfifo(inbox / "pipe.ipynb")
    rows = {row.submission: row for row in grade("00", [inbox / "link.ipynb", inbox / "pipe.ipynb"], tmp_path / "out")}
    assert rows["link.ipynb"].status == "not_regular_file" and "symbolic link" in rows["link.ipynb"].detail
    assert rows["pipe.ipynb"].status == "not_regular_file" and rows["pipe.ipynb"].total == 0


def test_no_sandbox_is_explicit_and_flags_every_row(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    _files(inbox)
    rows = grade("00", [inbox], tmp_path / "out", sandboxed=False)
    assert all("unsandboxed" in row.flags for row in rows)


def test_missing_bubblewrap_stops_grade_naming_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.grading import sandbox
    from scripts.grading.grade import GradingError

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    (tmp_path / "a.ipynb").write_text("")
    with pytest.raises(GradingError, match="install the Debian/Ubuntu package `bubblewrap`"):
        grade("00", [tmp_path / "a.ipynb"], tmp_path / "out")


def test_oversized_files_are_refused_before_they_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.grading import grade as grading

    monkeypatch.setattr(grading, "MAX_NOTEBOOK_BYTES", 10)
    (tmp_path / "big.ipynb").write_text("{" + " " * 100 + "}")
    (row,) = grade("00", [tmp_path / "big.ipynb"], tmp_path / "out")
    assert row.status == "too_large" and "Clear All Outputs" in row.detail
