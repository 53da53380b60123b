"""Benchmark the grader: 40 copies of Lab 00 (full, partial, blank) graded with -j 2, in the
sandbox and without it (``--no-sandbox``).

Reports each batch's wall time, seconds per submission, and the sandbox's overhead (total and
per submission). Writes ``bench/results/grading.json``.

    .venv/bin/python bench/bench_grading.py [--copies 40] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from scripts.grading.grade import grade
from scripts.grading.samples import blank, partial, solution

REPO = Path(__file__).resolve().parents[1]

RESULTS = REPO / "bench" / "results"


def _batch(root: Path, copies: int) -> Path:
    sources = root / "sources"
    sources.mkdir()
    kinds = [solution(sources), partial(sources), blank(sources)]
    batch = root / "batch"
    batch.mkdir()
    for index in range(copies):
        source = kinds[index % len(kinds)]
        shutil.copy(source, batch / f"student{index:02d}-{source.stem}.ipynb")
    return batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    timings: dict[str, float] = {}
    totals: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        root = Path(scratch)
        batch = _batch(root, args.copies)
        for label, sandboxed in (("sandbox", True), ("no_sandbox", False)):
            start = time.perf_counter()
            rows = grade("00", [batch], root / f"graded-{label}", jobs=args.jobs, sandboxed=sandboxed)
            timings[label] = time.perf_counter() - start
            totals[label] = sorted({row.total for row in rows})
    overhead = timings["sandbox"] / timings["no_sandbox"] - 1
    report = {
        "copies": args.copies,
        "jobs": args.jobs,
        "sandbox_s": round(timings["sandbox"], 1),
        "no_sandbox_s": round(timings["no_sandbox"], 1),
        "seconds_per_submission": round(timings["sandbox"] / args.copies, 2),
        "sandbox_overhead": round(overhead, 3),
        "sandbox_overhead_per_submission_s": round((timings["sandbox"] - timings["no_sandbox"]) * args.jobs / args.copies, 2),
        "distinct_totals": totals,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grading.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"graded {args.copies} submissions with -j {args.jobs}: sandbox {timings['sandbox']:.1f} s, "
          f"no sandbox {timings['no_sandbox']:.1f} s ({100 * overhead:+.1f} %, "
          f"{report['sandbox_overhead_per_submission_s']:+.2f} s per submission)")
    print(f"totals seen: {totals}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
