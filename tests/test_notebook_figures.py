"""Figures typed in the reference notebooks' Markdown agree with their stored outputs.

The chapters quote figures through generated substitutions (``scripts.book_figures``); a lab's
own Markdown cells sit next to the outputs they describe, so they may quote them, but a
re-execution that changes an output must not leave the prose behind. This test reads the
Markdown of ``solutions/00``–``03`` and finds the figures that are measurements:

* decimals with three or more decimal places (``0.0209``, ``−0.0062``, ``about 0.029``);
* counts out of a total (``8 of 40``, ``8 of the 40``);
* percentages (``10 %``, ``64%``).

Each must appear in the stored outputs of the same lab or of an earlier one (labs quote the
labs before them): a decimal as a printed number rounded to the same places, a count or a
percentage as printed. Policy constants (0.02, 0.75) have fewer places and are not figures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted((ROOT / "solutions").glob("0[0-3]-*.ipynb"))

DECIMAL = re.compile(r"(?<![\w.])[-−]?\d+\.\d{3,}(?![\d])")
COUNT = re.compile(r"\b(\d+) of (?:the )?(\d+)\b")
PERCENT = re.compile(r"\b(\d+(?:\.\d+)?) ?%")
NUMBER = re.compile(r"[-−]?\d+(?:\.\d+)?")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _output_text(path: Path) -> str:
    parts = []
    for cell in _cells(path):
        for output in cell.get("outputs", []):
            if "text" in output:
                parts.append("".join(output["text"]))
            plain = output.get("data", {}).get("text/plain")
            if plain:
                parts.append("".join(plain))
    return "\n".join(parts)


def _prose(path: Path) -> str:
    text = "\n".join("".join(cell["source"]) for cell in _cells(path) if cell["cell_type"] == "markdown")
    return re.sub(r"`[^`\n]*`", " ", text)  # code spans name things (`0.0`, `C=0.01`), they do not quote outputs


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("−", "-")).replace(" of the ", " of ").replace(" %", "%")


def disagreements(path: Path) -> list[str]:
    """The Markdown figures of one lab that no stored output of it or an earlier lab shows."""
    earlier = [lab for lab in LABS if lab.name <= path.name]
    outputs = _squash("\n".join(_output_text(lab) for lab in earlier))
    printed = [float(number.replace("−", "-")) for number in NUMBER.findall(outputs)]
    prose = _squash(_prose(path))
    problems = []
    for match in DECIMAL.finditer(prose):
        figure = match.group().replace("−", "-")
        places = len(figure.split(".")[1])
        value = float(figure)
        if not any(round(abs(number), places) == round(abs(value), places) for number in printed):
            problems.append(f"{figure} (no printed number rounds to it)")
    for match in COUNT.finditer(prose):
        if f"{match.group(1)} of {match.group(2)}" not in outputs:
            problems.append(f"'{match.group()}' (no output prints it)")
    for match in PERCENT.finditer(prose):
        if f"{match.group(1)}%" not in outputs:
            problems.append(f"'{match.group()}' (no output prints it)")
    return problems


@pytest.mark.parametrize("path", LABS, ids=[lab.stem for lab in LABS])
def test_markdown_figures_match_the_stored_outputs(path: Path) -> None:
    problems = disagreements(path)
    assert not problems, (
        f"{path.name}: figures in its Markdown that no stored output of this lab or an earlier one shows: "
        f"{problems}. Quote the output as it is printed, or point the reader to the output instead of typing the number"
    )


def test_a_wrong_figure_is_found(tmp_path: Path) -> None:
    """The test itself: a figure that disagrees with the output is reported, one that agrees is not."""
    notebook = {
        "cells": [
            {"cell_type": "code", "source": ["print(...)"], "outputs": [
                {"output_type": "stream", "name": "stdout", "text": ["refused 8 of 40 (20%), drop 0.0209\n"]}]},
            {"cell_type": "markdown", "source": ["8 of the 40 (20 %) fell 0.0209, about 0.021; 4 of 40, 0.0300 and 63 %"]},
        ]
    }
    path = tmp_path / "00-example.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    global LABS
    saved, LABS = LABS, [path]
    try:
        assert disagreements(path) == [
            "0.0300 (no printed number rounds to it)",
            "'4 of 40' (no output prints it)",
            "'63%' (no output prints it)",
        ]
    finally:
        LABS = saved
