"""Benchmark the grader: 40 copies of Lab 00 (full, partial, blank) graded with -j 2.

Reports the batch's wall time, seconds per submission, and the ratio to bare execution of
the same notebooks with plain ``pytest --nbval-lax -n 2`` (no grading plugin, no copying, no
gradebook): the grader's overhead. Writes ``bench/results/grading.json``.

    .venv/bin/python bench/bench_grading.py [--copies 40] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.grading.grade import _environment, grade  # noqa: E402
from tests.grading.corpus import blank, partial, solution  # noqa: E402

RESULTS = REPO / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        root = Path(scratch)
        sources = root / "sources"
        sources.mkdir()
        kinds = [solution(sources), partial(sources), blank(sources)]
        batch = root / "batch"
        batch.mkdir()
        for index in range(args.copies):
            source = kinds[index % len(kinds)]
            shutil.copy(source, batch / f"student{index:02d}-{source.stem}.ipynb")

        start = time.perf_counter()
        rows = grade("00", [batch], root / "graded", jobs=args.jobs)
        graded = time.perf_counter() - start

        bare = root / "bare"
        for index, notebook in enumerate(sorted(batch.glob("*.ipynb"))):
            folder = bare / f"{index:03d}"
            folder.mkdir(parents=True)
            shutil.copy(notebook, folder / "00-first-model.ipynb")
        (root / "bare.ini").write_text("[pytest]\n")
        command = [
            sys.executable, "-m", "pytest", "-c", str(root / "bare.ini"), "-p", "no:cacheprovider", "-q",
            "--nbval-lax", "--nbval-current-env", "-n", str(args.jobs), "--dist", "loadfile", str(bare),
        ]
        start = time.perf_counter()
        subprocess.run(command, cwd=bare, env=_environment(root / "bare-env"), capture_output=True, check=False)
        plain = time.perf_counter() - start

    totals = sorted({row.total for row in rows})
    report = {
        "copies": args.copies,
        "jobs": args.jobs,
        "grade_s": round(graded, 1),
        "seconds_per_submission": round(graded / args.copies, 2),
        "bare_nbval_s": round(plain, 1),
        "overhead_vs_bare": round(graded / plain - 1, 3),
        "distinct_totals": totals,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grading.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"graded {args.copies} submissions with -j {args.jobs} in {graded:.1f} s ({graded / args.copies:.2f} s each)")
    print(f"bare nbval on the same notebooks: {plain:.1f} s; grading overhead {100 * (graded / plain - 1):+.1f} %")
    print(f"totals seen: {totals}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
