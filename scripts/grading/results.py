"""Per-submission result files and the gradebook rebuilt from them.

The grader (never a sandbox) writes ``OUT/results/<slug>.json`` as soon as a submission is
judged, atomically (a temporary file in the same folder, then ``os.replace``), so a killed
batch loses at most the submissions still running, and ``--resume`` regrades only what has no
result for the same file and lab. ``gradebook.csv``/``gradebook.json`` are rebuilt from all
result files at the end (and can be rebuilt any time). Messages are capped and say so; CSV
cells that a spreadsheet would read as a formula are neutralised.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scripts.mlops.files import write_atomic

MAX_MESSAGE = 4096
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Row:
    """One gradebook row."""

    submission: str
    scores: dict[str, float]
    total: float
    max: float
    status: str
    flags: list[str]
    checks: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    key: str = ""  # sha256 of the submitted file + lab manifest: what --resume compares


def cap(text: str | None, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + f" … [cut: {len(text) - limit} more characters]"


def neutralise(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ tab or CR gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def save(folder: Path, slug: str, row: Row) -> Path:
    path = folder / f"{slug}.json"
    write_atomic(path, json.dumps(asdict(row), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def load(folder: Path) -> dict[str, Row]:
    """Every readable result file by slug (a damaged one is skipped: it will be regraded)."""
    rows: dict[str, Row] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rows[path.stem] = Row(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
    return rows


def gradebook(out: Path, rows: Iterable[Row], exercises: Iterable[str], lab: str) -> None:
    """Write gradebook.csv and gradebook.json from ``rows``."""
    rows = list(rows)
    exercises = list(exercises)
    columns = ["submission", *exercises, "total", "max", "status", "flags", "detail"]
    buffer: list[list[Any]] = [columns]
    for row in rows:
        values = [
            row.submission,
            *(f"{row.scores.get(ex, 0.0):g}" for ex in exercises),
            f"{row.total:g}",
            f"{row.max:g}",
            row.status,
            ";".join(row.flags),
            cap(row.detail, 500),
        ]
        buffer.append([neutralise(value) for value in values])
    import io

    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(buffer)
    write_atomic(out / "gradebook.csv", text.getvalue())
    document = {"lab": lab, "exercises": exercises, "submissions": [asdict(row) for row in rows]}
    write_atomic(out / "gradebook.json", json.dumps(document, indent=1, ensure_ascii=False) + "\n")
