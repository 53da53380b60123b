"""Benchmark the grader: 40 copies of Lab 00 (full, partial, blank) graded with -j 2, three ways in
one run: warm sandboxes (runner and kernel forked from the grader's zygote, the default), fresh
sandboxes (``MLOPS_COLD=1``: a new interpreter per runner and kernel) and no sandbox
(``--no-sandbox``, fresh interpreters).

Reports each batch's wall time and seconds per submission, warm against fresh, the sandbox's
overhead, and whether the three gradebooks are identical (the ``unsandboxed`` flag aside); exits
1 if they are not. Writes ``bench/results/grading.json``.

    .venv/bin/python bench/bench_grading.py [--copies 40] [--jobs 2]
"""

from __future__ import annotations

import argparse
import csv
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
#: (label, sandboxed, warm): the same batch three ways, side by side in one run.
RUNS = (("warm_sandbox", True, True), ("fresh_sandbox", True, False), ("fresh_no_sandbox", False, False))


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


def _gradebook(folder: Path) -> list[dict[str, str]]:
    with (folder / "gradebook.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "flags"} for row in csv.DictReader(handle)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    timings: dict[str, float] = {}
    books: dict[str, list[dict[str, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        root = Path(scratch)
        batch = _batch(root, args.copies)
        # The warm batch includes starting the zygote (this process has none yet): a cold start.
        for label, sandboxed, warm in RUNS:
            start = time.perf_counter()
            grade("00", [batch], root / f"graded-{label}", jobs=args.jobs, sandboxed=sandboxed, warm=warm)
            timings[label] = time.perf_counter() - start
            books[label] = _gradebook(root / f"graded-{label}")
    same = all(book == books["fresh_sandbox"] for book in books.values())
    report = {
        "copies": args.copies,
        "jobs": args.jobs,
        **{f"{label}_s": round(seconds, 1) for label, seconds in timings.items()},
        **{f"{label}_per_submission_s": round(seconds / args.copies, 2) for label, seconds in timings.items()},
        "warm_vs_fresh": round(timings["warm_sandbox"] / timings["fresh_sandbox"], 3),
        "sandbox_overhead": round(timings["fresh_sandbox"] / timings["fresh_no_sandbox"] - 1, 3),
        "identical_gradebooks": same,
        "distinct_totals": sorted({row["total"] for row in books["warm_sandbox"]}),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grading.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"graded {args.copies} Lab 00 submissions with -j {args.jobs}:")
    for label, seconds in timings.items():
        print(f"  {label:18} {seconds:7.1f} s  ({seconds / args.copies:.2f} s per submission)")
    print(f"warm / fresh: {report['warm_vs_fresh']:.2f}x; gradebooks identical (flags aside): {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
