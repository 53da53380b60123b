"""The class report: ``OUT/report.html`` beside ``gradebook.csv``, one self-contained page.

What an instructor reads after grading a class: the score distribution (a chart embedded as a
``data:`` PNG), each exercise's and each check's pass rate, the checks most students fail with
the hint the lab gives for them, the statuses and flags, and every student's total with a
relative link to their feedback file.

The page needs nothing else: no script, no stylesheet or font from elsewhere (the CSS is
inline), so it opens offline from the folder the grader wrote. Every value that comes from a
submission (its name, a status detail, a check's message) is HTML-escaped, and links are
percent-encoded relative paths, so a submission cannot inject markup into the report. It is
written atomically, like the gradebook.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scripts.mlops.files import write_atomic

from . import plan
from .results import Row, cap

REPORT = "report.html"
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #1a1a1a; background: #fff; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; width: 100%; }
th, td { border: 1px solid #8a8a8a; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #e8e8e8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bar { display: inline-block; height: 0.7rem; background: #1f5f99; vertical-align: middle; }
.low { color: #8b0000; font-weight: 600; }
img { max-width: 100%; height: auto; }
code { background: #f2f2f2; padding: 0 0.2rem; }
"""


@dataclass(frozen=True)
class CheckRate:
    """How many graded submissions passed one judgment."""

    id: str
    exercise: str
    what: str
    hint: str
    points: float
    passed: int
    graded: int

    @property
    def rate(self) -> float:
        return self.passed / self.graded if self.graded else 0.0


def feedback_name(submission: str) -> str:
    """The feedback file of ``submission`` inside ``feedback/`` (the name :func:`grade.rebuild` writes)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", submission) + ".md"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "–"


def check_rates(rows: Sequence[Row], manifest: dict[str, Any]) -> list[CheckRate]:
    """Pass rate of every judgment over the rows that ran (rows with no checks are not counted)."""
    declared = {entry["id"]: entry for entries in plan.judgments(manifest).values() for entry in entries}
    seen: dict[str, dict[str, Any]] = {}
    passed: Counter[str] = Counter()
    graded: Counter[str] = Counter()
    for row in rows:
        for check in row.checks:
            for record in check["checks"]:
                ident = str(record["id"])
                graded[ident] += 1
                passed[ident] += bool(record["passed"])
                if ident not in seen:
                    hint = ""
                    if check.get("kind") == "held-out" and " — " in str(record.get("message", "")):
                        hint = str(record["message"]).split(" — ", 1)[1]
                    seen[ident] = {"exercise": check["exercise"], "points": record["points"], "hint": hint}
    rates = []
    for ident, info in seen.items():
        entry = declared.get(ident, {})
        rates.append(
            CheckRate(
                ident,
                str(info["exercise"]),
                str(entry.get("what", ident)),
                str(entry.get("hint", info["hint"])),
                float(info["points"]),
                passed[ident],
                graded[ident],
            )
        )
    return sorted(rates, key=lambda r: (r.rate, r.exercise, r.id))


def histogram(totals: Sequence[float], maximum: float) -> str:
    """The score distribution as a PNG ``data:`` URI (one bar per whole point, 0 … maximum)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.8), dpi=100)
    top = max(1, int(maximum + 0.999))
    ax.hist(list(totals), bins=[x - 0.5 for x in range(top + 2)], color="#1f5f99", edgecolor="white")
    ax.set_xlim(-0.5, top + 0.5)
    ax.set_xlabel(f"total points (of {maximum:g})")
    ax.set_ylabel("submissions")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render(rows: Sequence[Row], manifest: dict[str, Any]) -> str:
    """The report as one HTML document (every submitted value escaped)."""
    exercises: dict[str, Any] = manifest["exercises"]
    maximum = rows[0].max if rows else float(manifest.get("max_points", 0))
    totals = [row.total for row in rows]
    ok = [row for row in rows if row.status == "ok"]
    mean = sum(totals) / len(totals) if totals else 0.0
    median = sorted(totals)[len(totals) // 2] if totals else 0.0
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may load from elsewhere: the page is read offline and must not run scripts.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">",
        f"<title>Class report: lab {_e(manifest['lab'])}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>Class report: lab {_e(manifest['lab'])} ({_e(manifest.get('notebook', ''))})</h1>",
        f"<p>{len(rows)} submissions, {len(ok)} graded without a problem. Mean score <b>{mean:.1f}</b>, "
        f"median <b>{median:g}</b> of {maximum:g} points.</p>",
        "<h2>Score distribution</h2>",
    ]
    if rows:
        alt = f"Histogram of total scores of {len(rows)} submissions, from 0 to {maximum:g} points"
        out.append(f'<img src="{histogram(totals, maximum)}" alt="{_e(alt)}" width="700" height="280">')
    out += [
        "<h2>Exercises</h2>",
        "<table><thead><tr><th>exercise</th><th>points</th><th>mean</th><th>full marks</th>"
        "<th>zero</th></tr></thead><tbody>",
    ]
    for exercise, info in exercises.items():
        scores = [row.scores.get(exercise, 0.0) for row in rows]
        full = sum(1 for s in scores if s >= float(info["points"]) - 1e-9)
        zero = sum(1 for s in scores if s <= 0)
        average = sum(scores) / len(scores) if scores else 0.0
        out.append(
            f"<tr><td>{_e(exercise)}</td><td class=num>{float(info['points']):g}</td>"
            f"<td class=num>{average:.2f}</td><td class=num>{full} ({_pct(full, len(rows))})</td>"
            f"<td class=num>{zero} ({_pct(zero, len(rows))})</td></tr>"
        )
    out.append("</tbody></table>")
    rates = check_rates(rows, manifest)
    out += [
        "<h2>Checks, most failed first</h2>",
        "<p>Pass rate over the submissions whose cells ran; the hint is the one the lab gives.</p>",
        "<table><thead><tr><th>check</th><th>exercise</th><th>what it judges</th><th>points</th>"
        "<th>passed</th><th>hint</th></tr></thead><tbody>",
    ]
    for rate in rates:
        width = round(60 * rate.rate)
        low = " low" if rate.rate < 0.5 else ""
        out.append(
            f"<tr><td><code>{_e(rate.id)}</code></td><td>{_e(rate.exercise)}</td><td>{_e(rate.what)}</td>"
            f"<td class=num>{rate.points:g}</td><td class='num{low}'>{rate.passed}/{rate.graded} "
            f"({_pct(rate.passed, rate.graded)}) <span class=bar style='width:{width}px'></span></td>"
            f"<td>{_e(rate.hint)}</td></tr>"
        )
    if not rates:
        out.append("<tr><td colspan=6>No check ran in any submission.</td></tr>")
    out.append("</tbody></table>")
    out += _counts("Statuses", "status", Counter(row.status for row in rows))
    out += _counts("Flags", "flag", Counter(flag for row in rows for flag in row.flags))
    out += [
        "<h2>Students</h2>",
        "<table><thead><tr><th>submission</th>"
        + "".join(f"<th>{_e(ex)}</th>" for ex in exercises)
        + "<th>total</th><th>status</th><th>flags</th><th>feedback</th></tr></thead><tbody>",
    ]
    for row in rows:
        link = "feedback/" + quote(feedback_name(row.submission))
        detail = f"<br><small>{_e(cap(row.detail, 300))}</small>" if row.detail else ""
        out.append(
            f"<tr><td>{_e(row.submission)}</td>"
            + "".join(f"<td class=num>{row.scores.get(ex, 0.0):g}</td>" for ex in exercises)
            + f"<td class=num>{row.total:g} / {row.max:g}</td><td>{_e(row.status)}{detail}</td>"
            f'<td>{_e(", ".join(row.flags))}</td><td><a href="{_e(link)}">feedback</a></td></tr>'
        )
    out += ["</tbody></table>", "</main></body></html>", ""]
    return "\n".join(out)


def _counts(title: str, label: str, counts: Counter[str]) -> list[str]:
    lines = [f"<h2>{_e(title)}</h2>"]
    if not counts:
        return [*lines, f"<p>No submission has a {_e(label)}.</p>"]
    lines.append(f"<table><thead><tr><th>{_e(label)}</th><th>submissions</th></tr></thead><tbody>")
    lines += [f"<tr><td>{_e(key)}</td><td class=num>{n}</td></tr>" for key, n in sorted(counts.items())]
    return [*lines, "</tbody></table>"]


def write(out: Path, rows: Iterable[Row], manifest: dict[str, Any]) -> Path:
    """Write ``OUT/report.html`` atomically and return its path."""
    path = Path(out) / REPORT
    write_atomic(path, render(list(rows), manifest))
    return path
