"""The book: Jupyter Book 1, every lab and chapter in the table of contents.

The strict build itself (warnings fail) and its pages are tested in tests/test_site.py, which
builds both editions once for its offline and browser checks."""

from __future__ import annotations

import sys
from pathlib import Path

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
