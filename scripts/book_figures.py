"""The figures the book's chapters quote, read from the stored outputs of the reference notebooks.

Chapter 05's figures come from the committed contention measurement instead
(``bench/results/contention.json``, written by ``bench/bench_contention.py``).

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
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
SOLUTIONS = REPO / "solutions"
CONTENTION = REPO / "bench" / "results" / "contention.json"
USE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
FRONT = re.compile(r"\A---\n(?P<body>.*?)\n---\n", re.S)
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class FigureError(ValueError):
    """A figure could not be read from the stored outputs, or a chapter uses an unknown one."""


def outputs(notebook: str, cell_id: str) -> str:
    """All text/plain output (streams and results) of one cell of ``solutions/<notebook>.ipynb``."""
    import nbformat  # here, not at the top: chapter 05's figure needs only load_range (2 s saved)

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
    values.update(contention_figures(json.loads(CONTENTION.read_text())))
    return values


def _writers_phrase(counts: list[int]) -> str:
    words = [str(count) for count in counts]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def load_range(document: dict[str, Any]) -> str:
    """The 1-minute load averages seen while the contention measurement ran, as "low to high"."""
    loads = [float(document["machine"]["load_average"][0])]
    loads += [float(row["load_average"][0]) for row in document["rows"] if "load_average" in row]
    low, high = min(loads), max(loads)
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f} to {high:.0f}"


def contention_figures(document: dict[str, Any]) -> dict[str, str]:
    """Chapter 05's figures, from the contention measurement (``bench/results/contention.json``).

    "top" is the largest number of writers measured; "failed" figures read "N of M" calls.
    """
    rows = document["rows"]
    counts = sorted({int(row["writers"]) for row in rows})
    top = counts[-1]

    def row(backend: str, mode: str = "one-by-one", retries: str = "off", writers: int = top) -> dict[str, Any]:
        for candidate in rows:
            if (candidate["backend"], candidate["mode"], candidate["retries"], int(candidate["writers"])) == (
                backend,
                mode,
                retries,
                writers,
            ):
                return dict(candidate)
        raise FigureError(f"contention.json has no row {backend}/{mode}/retries {retries}/{writers} writers")

    def failed(backend: str, mode: str = "one-by-one", retries: str = "off") -> str:
        found = row(backend, mode, retries)
        return f"{found['failed_calls']} of {found['calls']}"

    def seconds(value: float) -> str:
        return f"{value:.1f} s"

    sqlite_failing = [
        writers for writers in counts if row("sqlite", writers=writers)["failed_calls"]
    ]  # one by one, retries off: the seed's pattern
    if sqlite_failing:
        first = row("sqlite", writers=sqlite_failing[0])
        kinds = ", ".join(f"{count} {kind}" for kind, count in first["failure_kinds"].items())
        verdict = (
            f"the first calls failed at {sqlite_failing[0]} writers "
            f"({first['failed_calls']} of {first['calls']}: {kinds})"
        )
        reading = (
            "From there on, SQLite refused writes it could not lock in time, and the writer saw the error; "
            "retries and PostgreSQL are measured against exactly that load."
        )
    else:
        verdict = f"no call failed at any load measured, up to {top} writers at once"
        reading = (
            "The seed's errors did not appear: the server queued the writes and every writer waited "
            "instead, so on this machine contention costs time, not data."
        )
    starts = document["server_start"]
    values = {
        "l05_calls": str(document["metrics"]),
        "l05_writers": _writers_phrase(counts),
        "l05_top": str(top),
        "l05_configurations": str(len(rows)),
        "l05_failed_total": str(sum(int(found["failed_calls"]) for found in rows)),
        "l05_calls_total": str(sum(int(found["calls"]) for found in rows)),
        "l05_sqlite_verdict": verdict,
        "l05_reading": reading,
        "l05_sqlite_failed": failed("sqlite"),
        "l05_sqlite_retries_failed": failed("sqlite", retries="on"),
        "l05_sqlite_batched_failed": failed("sqlite", mode="batched"),
        "l05_postgres_failed": failed("postgres"),
        "l05_sqlite_slowest": seconds(row("sqlite")["slowest_writer_s"]),
        "l05_sqlite_batched_slowest": seconds(row("sqlite", mode="batched")["slowest_writer_s"]),
        "l05_postgres_slowest": seconds(row("postgres")["slowest_writer_s"]),
        "l05_postgres_batched_slowest": seconds(row("postgres", mode="batched")["slowest_writer_s"]),
        "l05_load": load_range(document),
        "l05_cpus": str(document["machine"]["cpus"]),
        "l05_sqlite_fresh_start": seconds(starts["sqlite"]["fresh"]["server_healthy_s"]),
        "l05_sqlite_migrated_start": seconds(starts["sqlite"]["migrated"]["server_healthy_s"]),
        "l05_postgres_fresh_start": seconds(starts["postgres"]["fresh"]["server_healthy_s"]),
        "l05_postgres_migrated_start": seconds(starts["postgres"]["migrated"]["server_healthy_s"]),
        "l05_postgres_schema": seconds(starts["postgres"]["migrated"]["prepare_s"]),
    }
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
