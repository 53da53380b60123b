"""The book: Jupyter Book 1, strict build (warnings fail), lab and chapter pages present."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")


def test_jupyter_book_major_version_is_1() -> None:
    from importlib.metadata import version

    assert version("jupyter-book").split(".")[0] == "1", "the book uses _config.yml: Jupyter Book 1 (Sphinx)"


def test_every_lab_and_chapter_is_in_the_toc() -> None:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = {chapter["file"] for part in toc["parts"] for chapter in part["chapters"]}
    for lab in (REPO / "labs").glob("*.ipynb"):
        assert f"labs/{lab.stem}" in files, f"{lab.name} is not in _toc.yml"
        assert f"book/{lab.stem}" in files, f"lab {lab.stem} has no chapter book/{lab.stem}.md in _toc.yml"


@pytest.mark.slow
def test_strict_build_produces_lab_and_chapter_pages(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(JUPYTER_BOOK), "build", str(REPO), "--path-output", str(tmp_path), "-W", "-n", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").is_file()
    assert not (html / "reports").exists(), "a notebook was executed and failed during the build"
    assert not list(html.rglob("solutions/*.html")), "reference solutions must not be published"
    home = (html / "book" / "index.html").read_text()
    for lab in sorted((REPO / "labs").glob("*.ipynb")):
        page = html / "labs" / f"{lab.stem}.html"
        chapter = html / "book" / f"{lab.stem}.html"
        assert page.is_file() and chapter.is_file()
        assert f'href="../labs/{lab.stem}.html"' in home, f"{lab.stem} is missing from the navigation"
        text = page.read_text()
        assert "is not done yet" in text and "BEGIN SOLUTION" not in text
        assert not re.search(r"Traceback|NotImplementedError: Exercise", text), "lab pages must show no outputs"
