"""Benchmarks for the things students and instructors wait for (``make bench``).

Measures, on this machine:

* each reference notebook executed end to end in a fresh kernel (median of 3), next to a
  floor: a notebook whose only cell imports ``scripts.mlops`` and MLflow;
* ``jupyter-book build`` cold (empty output folder) and warm (same folder again);
* ``make test`` (skip with ``--skip-tests``);
* then every other ``bench/bench_*.py`` script.

Results are printed and written to ``bench/results/bench.json``. This is not a test: numbers
depend on the machine; compare them with the targets in the issue tracker.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from scripts.grading.execute import run

REPO = Path(__file__).resolve().parents[1]


RESULTS = REPO / "bench" / "results"


def _time(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _median_run(path: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / path.name
            shutil.copy(path, copy)
            times.append(_time(lambda copy=copy: run(copy)))
    return times


def bench_notebooks(repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        floor = Path(scratch) / "floor.ipynb"
        nbformat.write(
            nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import mlflow\nimport scripts.mlops.train")]),
            floor,
        )
        times = _median_run(floor, repeats)
    results["floor (kernel + imports)"] = {"median_s": statistics.median(times), "runs": times}
    for path in sorted((REPO / "solutions").glob("[0-9][0-9]-*.ipynb")):
        times = _median_run(path, repeats)
        results[path.stem] = {"median_s": statistics.median(times), "runs": times}
    return results


def bench_book() -> dict[str, float]:
    exe = str(Path(sys.executable).with_name("jupyter-book"))
    with tempfile.TemporaryDirectory() as scratch:
        command = [exe, "build", str(REPO), "--path-output", scratch, "-W", "-n", "--keep-going", "-q"]
        cold = _time(lambda: subprocess.run(command, check=True, capture_output=True))
        warm = _time(lambda: subprocess.run(command, check=True, capture_output=True))
    return {"cold_s": cold, "warm_s": warm}


def bench_tests() -> dict[str, float]:
    done = subprocess.run(["make", "test"], cwd=REPO, capture_output=True, text=True)
    seconds = float("nan")
    for line in done.stdout.splitlines()[::-1]:
        if " in " in line and ("passed" in line or "failed" in line):
            seconds = float(line.rsplit(" in ", 1)[1].split("s")[0])
            break
    return {"pytest_s": seconds, "exit_code": done.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-tests", action="store_true", help="do not time `make test`")
    args = parser.parse_args()
    report: dict[str, object] = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}}
    report["notebooks"] = notebooks = bench_notebooks(args.repeats)
    print(f"{'notebook':32s} {'median (s)':>10s}   runs")
    for name, entry in notebooks.items():
        print(f"{name:32s} {entry['median_s']:10.2f}   {', '.join(f'{t:.2f}' for t in entry['runs'])}")
    report["book"] = book = bench_book()
    print(f"\njupyter-book build: cold {book['cold_s']:.1f} s, warm {book['warm_s']:.1f} s")
    if not args.skip_tests:
        report["make_test"] = tests = bench_tests()
        print(f"make test: pytest {tests['pytest_s']:.1f} s (exit {tests['exit_code']})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    for script in sorted((REPO / "bench").glob("bench_*.py")):
        print(f"\n== {script.name}")
        subprocess.run([sys.executable, str(script)], cwd=REPO, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
