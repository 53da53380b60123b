"""The figures the book's chapters quote, read from the stored outputs of the reference notebooks.

A chapter never types a measured number by hand: it writes a MyST substitution such as
``{{ l03_overall_change }}``, and its front matter defines the value::

    ---
    myst:
      substitutions:
        l03_overall_change: "−0.0062"
    ---

This module computes every figure from the outputs stored in ``solutions/*.ipynb`` (which
nbval keeps equal to what the notebooks compute) and rewrites the front matter of each chapter
with the figures its text uses::

    python -m scripts.book_figures            # rewrite the chapters' front matter
    python -m scripts.book_figures --check    # exit 1 if a chapter is out of date (the tests do this)

After re-executing a solution, run it: a changed output then changes the prose with it, and
``tests/test_book_figures.py`` fails until it has run.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
SOLUTIONS = REPO / "solutions"
USE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
FRONT = re.compile(r"\A---\n(?P<body>.*?)\n---\n", re.S)
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class FigureError(ValueError):
    """A figure could not be read from the stored outputs, or a chapter uses an unknown one."""


def outputs(notebook: str, cell_id: str) -> str:
    """All text/plain output (streams and results) of one cell of ``solutions/<notebook>.ipynb``."""
    nb = nbformat.read(SOLUTIONS / f"{notebook}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.get("id") == cell_id:
            parts = []
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    parts.append(output.get("text", ""))
                elif "data" in output:
                    parts.append(output["data"].get("text/plain", ""))
            return "\n".join(parts)
    raise FigureError(f"solutions/{notebook}.ipynb has no cell {cell_id!r}")


def table(text: str) -> dict[str, list[float]]:
    """The numeric rows of a DataFrame's text rendering, by row label, across wrapped column blocks."""
    rows: dict[str, list[float]] = {}
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 2 or not all(NUMBER.match(token) for token in tokens[1:]):
            continue
        rows.setdefault(tokens[0], []).extend(float(token) for token in tokens[1:])
    return rows


def line_number(text: str, pattern: str, group: int = 1) -> float:
    match = re.search(pattern, text, flags=re.M)
    if not match:
        raise FigureError(f"no output line matches {pattern!r}")
    return float(match.group(group))


def signed(value: float, digits: int = 4) -> str:
    """A change as the prose prints it: an explicit sign, a real minus."""
    text = f"{value:+.{digits}f}"
    return text.replace("-", "−")


def plain(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def rule_tolerance(std: float) -> float:
    """Lab 02's rule: two standard deviations, rounded up to the next multiple of 0.005."""
    return round(math.ceil(round(2 * std, 4) / 0.005) * 0.005, 3)


def figures() -> dict[str, str]:
    """Every figure a chapter may quote, by substitution name."""
    lab02 = "02-quality-gates"
    production = table(outputs(lab02, "production"))["(overall)"]
    candidate = table(outputs(lab02, "candidate"))
    spread = table(outputs(lab02, "noise"))  # n, reference, mean, std, min, max, range, worst_drop
    honesty_text = outputs(lab02, "noise-honesty")
    honesty = table(honesty_text)  # n, binomial SE, bootstrap bias, bootstrap std, fresh bias, fresh std
    tolerance = line_number(outputs(lab02, "ex2"), r"tolerance (\d+\.\d+)")

    def refused(which: str, tol: str) -> str:
        match = re.search(
            rf"^\s*{re.escape(tol)}\s+bootstrap refits (\d+) of (\d+), fresh batches (\d+) of (\d+)", honesty_text, re.M
        )
        if not match:
            raise FigureError(f"no false-alarm line for tolerance {tol}")
        found, total = (match.group(1), match.group(2)) if which == "bootstrap" else (match.group(3), match.group(4))
        return f"{found} of {total}"

    values: dict[str, str] = {
        "prod_overall": plain(production[0]),
        "l02_candidate_overall": plain(candidate["(overall)"][1]),
        "l02_overall_change": signed(candidate["(overall)"][2]),
        "l02_student_change": signed(candidate["student"][2]),
        "l02_tolerance": f"{tolerance:g}",
        "l02_overall_std": plain(spread["overall"][3]),
        "l02_overall_worst_drop": plain(spread["overall"][7]),
        "l02_overall_rule_tolerance": f"{rule_tolerance(spread['overall'][3]):g}",
        "l02_student_std": plain(spread["student"][3]),
        "l02_student_worst_drop": plain(spread["student"][7]),
        "l02_student_bias": signed(honesty["student"][2]),
        "l02_fresh_enterprise_std": plain(honesty["enterprise"][5]),
        "l02_fresh_student_std": plain(honesty["student"][5]),
        "l02_fresh_rule_tolerance": f"{rule_tolerance(max(honesty[s][5] for s in ('consumer', 'enterprise', 'small_business', 'student'))):g}",
        "l02_false_alarms_bootstrap": refused("bootstrap", "0.02"),
        "l02_false_alarms_fresh": refused("fresh", "0.02"),
        "l02_false_alarms_fresh_0015": refused("fresh", "0.015"),
    }
    for segment in ("consumer", "enterprise", "small_business", "student"):
        values[f"l02_se_{segment}"] = plain(honesty[segment][1], 3)
    lab03 = "03-regression-injection"
    comparison = table(outputs(lab03, "ex1"))  # baseline, candidate, change
    baseline = table(outputs(lab03, "production"))  # accuracy, n
    values.update(
        {
            "l03_overall_before": plain(comparison["(overall)"][0]),
            "l03_overall_after": plain(comparison["(overall)"][1]),
            "l03_overall_change": signed(comparison["(overall)"][2]),
            "l03_enterprise_before": plain(comparison["enterprise"][0]),
            "l03_enterprise_after": plain(comparison["enterprise"][1]),
            "l03_enterprise_change": signed(comparison["enterprise"][2]),
            "l03_enterprise_n": f"{baseline['enterprise'][1]:.0f}",
            "l03_enterprise_lost": f"{round(-comparison['enterprise'][2] * baseline['enterprise'][1]):.0f}",
            "l03_enterprise_share": f"{100 * baseline['enterprise'][1] / baseline['(overall)'][1]:.1f} %",
        }
    )
    return values


def used(text: str) -> list[str]:
    """Substitution names a chapter's body uses, in order of first use."""
    match = FRONT.match(text)
    body = text[match.end() :] if match else text
    return list(dict.fromkeys(USE.findall(body)))


GENERATED = "# Generated by `python -m scripts.book_figures` from the solutions' stored outputs."


def kept_front_matter(front: str) -> list[str]:
    """The lines of a front matter this module does not own: all but its ``myst:`` block and comment.

    A chapter that shows executed figures is a MyST notebook, whose front matter also holds
    ``file_format: mystnb`` and a ``kernelspec``; those lines are kept as they are, first.
    """
    kept: list[str] = []
    in_myst = False
    for line in front.splitlines():
        if line == GENERATED:
            continue
        if line.startswith("myst:"):
            in_myst = True
            continue
        if in_myst and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        in_myst = False
        kept.append(line)
    return kept


def with_front_matter(text: str, known: dict[str, str]) -> str:
    """``text`` with its ``myst.substitutions`` set to those its body uses; other front matter is kept."""
    names = used(text)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise FigureError(f"unknown figure(s) {unknown}; known: {sorted(known)}")
    match = FRONT.match(text)
    body = text[match.end() :] if match else text
    lines = kept_front_matter(match.group("body")) if match else []
    if names:
        lines += [GENERATED, "myst:", "  substitutions:", *(f'    {name}: "{known[name]}"' for name in names)]
    if not lines:
        return body
    return "\n".join(["---", *lines]) + "\n---\n" + body


def chapters() -> list[Path]:
    return sorted(BOOK.glob("*.md"))


def main(argv: list[str] | None = None, write: Callable[[Path, str], object] = Path.write_text) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.book_figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report chapters whose figures are out of date")
    args = parser.parse_args(argv)
    known = figures()
    stale = []
    for path in chapters():
        text = path.read_text(encoding="utf-8")
        fresh = with_front_matter(text, known)
        if fresh != text:
            stale.append(path)
            if not args.check:
                write(path, fresh)
    for path in stale:
        print(f"{'out of date' if args.check else 'updated'}: {path.relative_to(REPO)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
