"""Compare a candidate's evaluation JSON with the committed baseline, bucket by bucket.

    python -m scripts.mlops.compare_baseline --candidate C.json --baseline B.json --tolerance 0.02

Exit status: **0** every bucket is within the tolerance (one summary line is printed);
**2** at least one bucket dropped by more than the tolerance, is missing, or holds a bad
number, or the two files were evaluated on different data (a Markdown table of the failing
rows is printed); **1** the input is unusable (missing file, invalid JSON, missing keys, a
bad option) and nothing was compared. ``python -m scripts.mlops compare-baseline`` is the same
command.

The rules (``candidate >= baseline - tolerance`` with a float epsilon, small slices fail
unless ``--allow-small-slices``) are :mod:`scripts.mlops.gate`'s :class:`SliceRegression`
and :class:`EvalSetMatch` checks; this module only reads files and prints.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from . import gate


def compare(
    candidate: Mapping[str, Any],
    baseline: Mapping[str, Any],
    *,
    tolerance: float = gate.DEFAULT_TOLERANCE,
    min_slice_size: int = gate.DEFAULT_MIN_SLICE_SIZE,
    allow_small_slices: bool = False,
) -> gate.GateReport:
    """Run the eval-set fingerprint and per-slice regression checks on two documents."""
    checks: list[gate.Check] = [
        gate.EvalSetMatch(),
        gate.SliceRegression(tolerance=tolerance, min_slice_size=min_slice_size, allow_small_slices=allow_small_slices),
    ]
    return gate.run_gate(checks, gate.Evidence(candidate=candidate, baseline=baseline))


def failure_table(report: gate.GateReport) -> str:
    """Markdown table of what failed: one row per failing bucket, plus one for a hash mismatch."""
    lines = gate.slice_markdown([]).splitlines()  # the header
    for result in report.failed:
        rows = [row for row in result.details.get("rows", []) if row["status"] == "fail"]
        if rows:
            lines += gate.slice_markdown(rows).splitlines()[2:]
        elif result.name == gate.EvalSetMatch.name:
            cells = [
                "eval_set_hash",
                result.details.get("baseline"),
                result.details.get("candidate"),
                "-",
                "must match",
                "different evaluation sets: the numbers are not comparable",
            ]
            lines.append("| " + " | ".join(gate.markdown_cell(cell) for cell in cells) + " |")
        else:  # a check-level failure, e.g. no buckets at all
            lines.append(f"| ({result.name}) | - | - | - | - | {gate.markdown_cell(result.reason)} |")
    return "\n".join(lines)


def failure_line(report: gate.GateReport, tolerance: float) -> str:
    """One line saying what failed, above the table."""
    parts = []
    for result in report.failed:
        rows = result.details.get("rows", [])
        if result.name == gate.SliceRegression.name and rows:
            failing = sum(row["status"] == "fail" for row in rows)
            parts.append(f"{failing} of {len(rows)} buckets failed (tolerance {tolerance:g})")
        elif result.name == gate.EvalSetMatch.name:
            parts.append("the evaluation sets differ (eval_set_hash)")
        else:
            parts.append(result.reason)
    return "FAIL: " + "; ".join(parts)


def summary_line(report: gate.GateReport, baseline: Mapping[str, Any], tolerance: float) -> str:
    """One line for a passing comparison."""
    rows = report[gate.SliceRegression.name].details["rows"]
    compared = [row for row in rows if row["status"] == "pass"]
    worst = max(compared, key=lambda row: row["drop"])
    line = (
        f"PASS: all {len(compared)} buckets within {tolerance:g} of {baseline.get('model', 'the baseline')} "
        f"v{baseline.get('version', '?')} (largest drop: {worst['slice']} {worst['drop']:+.4f}); "
        f"eval set {str(baseline.get('eval_set_hash'))[:19]}..."
    )
    skipped = [f"{row['slice']} (n={row['n']})" for row in rows if row["status"] == "skipped"]
    return line + (f"; skipped as too small: {', '.join(skipped)}" if skipped else "")


if __name__ == "__main__":  # the seed's spelling: python -m scripts.mlops.compare_baseline ...
    from .cli import main

    sys.exit(main(["compare-baseline", *sys.argv[1:]]))
