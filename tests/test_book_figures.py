"""The chapters' figures agree with the stored outputs of the reference notebooks.

Chapters quote measured numbers through MyST substitutions whose values
``python -m scripts.book_figures`` writes into their front matter from the solutions' stored
outputs (which nbval keeps equal to what the notebooks compute). These tests fail when a
chapter's figures are out of date, when prose types a measured number by hand, and when a
gate report quoted in a code block is not what the lab printed."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from scripts import book_figures

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = book_figures.chapters()
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
REPORT_LINE = re.compile(r"^[a-z_0-9]+\s+FAIL\s+(?P<reason>.+)$", re.M)


def _body(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    match = book_figures.FRONT.match(text)
    return text[match.end() :] if match else text


def _stored_outputs() -> str:
    parts = []
    for solution in sorted((REPO / "solutions").glob("*.ipynb")):
        for cell in nbformat.read(solution, as_version=4).cells:
            for output in cell.get("outputs", []):
                parts.append(output.get("text", "") if output.get("output_type") == "stream" else "")
                parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_every_figure_is_read_from_the_stored_outputs() -> None:
    figures = book_figures.figures()
    assert figures["l03_overall_change"].startswith("−") and figures["l02_tolerance"] == "0.02"
    assert all(value.strip() for value in figures.values())


def test_chapters_quote_the_figures_the_solutions_print() -> None:
    """Fails when a re-executed solution changed a number: run `python -m scripts.book_figures`."""
    figures = book_figures.figures()
    stale = [path.name for path in CHAPTERS if book_figures.with_front_matter(path.read_text(), figures) != path.read_text()]
    assert not stale, f"{stale}: figures out of date, run `python -m scripts.book_figures` and commit"
    assert any(book_figures.used(path.read_text()) for path in CHAPTERS), "no chapter quotes a figure"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[path.stem for path in CHAPTERS])
def test_prose_does_not_type_a_quoted_figure_by_hand(chapter: Path) -> None:
    """A 4-decimal figure that a substitution provides must not also appear as a literal in prose."""
    figures = book_figures.figures()
    prose = FENCE.sub("", _body(chapter))
    precise = {value for value in figures.values() if re.fullmatch(r"[−-]?\d\.\d{4}", value)}
    typed = sorted(value for value in precise if re.search(rf"(?<![\d.]){re.escape(value.lstrip('−'))}(?!\d)", prose))
    assert not typed, f"{chapter.name} types {typed} by hand: quote them with a {{{{ substitution }}}}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[path.stem for path in CHAPTERS])
def test_gate_reports_quoted_in_code_blocks_are_what_a_lab_printed(chapter: Path) -> None:
    stored = _stored_outputs()
    for block in FENCE.findall(_body(chapter)):
        for match in REPORT_LINE.finditer(block):
            assert match.group("reason") in stored, f"{chapter.name} quotes a report no lab printed: {match.group(0)}"


def test_a_wrong_or_unknown_figure_is_caught() -> None:
    figures = book_figures.figures()
    chapter = '---\nmyst:\n  substitutions:\n    l03_overall_change: "−0.0099"\n---\nOverall it lost {{ l03_overall_change }}.\n'
    assert book_figures.with_front_matter(chapter, figures) != chapter
    assert f'l03_overall_change: "{figures["l03_overall_change"]}"' in book_figures.with_front_matter(chapter, figures)
    with pytest.raises(book_figures.FigureError, match="unknown"):
        book_figures.with_front_matter("{{ no_such_figure }}", figures)


def test_the_table_reader_joins_wrapped_column_blocks() -> None:
    text = "            n  mean  \\\nslice              \na        10  0.5   \noverall  20  0.6   \n\n       worst\nslice       \na       0.1\noverall 0.2\n"
    assert book_figures.table(text) == {"a": [10.0, 0.5, 0.1], "overall": [20.0, 0.6, 0.2]}


def test_a_notebook_chapters_front_matter_is_kept_around_the_figures() -> None:
    """Chapters with executed figures are MyST notebooks: their file_format and kernelspec survive."""
    figures = book_figures.figures()
    notebook = "file_format: mystnb\nkernelspec:\n  name: python3\n  display_name: Python 3"
    stale = f'---\n{notebook}\nmyst:\n  substitutions:\n    l03_overall_change: "−0.0099"\n---\nIt lost {{{{ l03_overall_change }}}}.\n'
    fresh = book_figures.with_front_matter(stale, figures)
    assert fresh.startswith(f"---\n{notebook}\n{book_figures.GENERATED}\nmyst:\n")
    assert f'l03_overall_change: "{figures["l03_overall_change"]}"' in fresh
    assert book_figures.with_front_matter(fresh, figures) == fresh
    assert book_figures.with_front_matter(f"---\n{notebook}\n---\nNo figure.\n", figures) == f"---\n{notebook}\n---\nNo figure.\n"


def _contention_document(failed_at_16: int) -> dict[str, object]:
    rows = []
    for backend in ("sqlite", "postgres"):
        for mode in ("one-by-one", "batched"):
            for retries in ("off", "on"):
                for writers in (4, 16):
                    rows.append({"backend": backend, "mode": mode, "retries": retries, "writers": writers,
                                 "calls": writers * (1 if mode == "batched" else 50), "failed_calls": 0,
                                 "failure_kinds": {}, "slowest_writer_s": writers * 1.25})  # fmt: skip
    rows[1].update(failed_calls=failed_at_16, failure_kinds={"database is locked": failed_at_16} if failed_at_16 else {})
    start = {"fresh": {"server_healthy_s": 120.0}, "migrated": {"server_healthy_s": 20.0, "prepare_s": 2.5}}
    return {"metrics": 50, "machine": {"cpus": 2, "load_average": [3.5, 3.0, 2.0]}, "rows": rows,
            "server_start": {"sqlite": start, "postgres": start}}  # fmt: skip


def test_contention_figures_say_what_the_measurement_says() -> None:
    calm = book_figures.contention_figures(_contention_document(0))
    assert calm["l05_sqlite_verdict"] == "no call failed at any load measured, up to 16 writers at once"
    assert calm["l05_sqlite_failed"] == "0 of 800" and calm["l05_sqlite_batched_failed"] == "0 of 16"
    assert calm["l05_writers"] == "4 and 16" and calm["l05_sqlite_slowest"] == "20.0 s"
    assert calm["l05_postgres_schema"] == "2.5 s" and calm["l05_sqlite_fresh_start"] == "120.0 s"
    assert calm["l05_load"] == "4", "no row has a load of its own: the load when it started"
    locked = book_figures.contention_figures(_contention_document(7))
    assert locked["l05_sqlite_verdict"] == "the first calls failed at 16 writers (7 of 800: 7 database is locked)"
    assert locked["l05_failed_total"] == "7"
    assert "did not appear" in calm["l05_reading"] and "refused writes" in locked["l05_reading"]


def test_chapter_05_quotes_the_committed_contention_measurement() -> None:
    """Its prose reads the measured numbers from bench/results/contention.json, and types none of them."""
    chapter = REPO / "book" / "05-troubleshooting.md"
    names = book_figures.used(chapter.read_text())
    assert {"l05_sqlite_verdict", "l05_sqlite_slowest", "l05_postgres_failed"} <= set(names)
    figures = book_figures.figures()
    prose = FENCE.sub("", _body(chapter))
    seconds = sorted({figures[name] for name in names if figures[name].endswith(" s")})
    typed = [value for value in seconds if value in prose]
    assert not typed, f"05-troubleshooting.md types {typed} by hand: quote them with a substitution"
    assert "lab05_contention()" in chapter.read_text(), "the chapter draws the measurement"
