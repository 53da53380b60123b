"""Benchmarks for the things students and instructors wait for (``make bench``).

Measures, on this machine:

* each reference notebook executed end to end in a fresh kernel (median of 3), next to a
  floor: a notebook whose only cell imports ``scripts.mlops`` and MLflow;
* ``jupyter-book build`` cold (empty output folder) and warm (same folder again), for the student
  and the instructor edition, and the wall time of ``tests/test_site.py`` (builds + browser);
* ``make test`` (skip with ``--skip-tests``);
* then every other ``bench/bench_*.py`` script.

Results are printed and written to ``bench/results/bench.json``. This is not a test: numbers
depend on the machine; compare them with the targets in the issue tracker.
"""

from __future__ import annotations

import argparse
import functools
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
    """Both editions, each cold (empty output folder) and warm (the same folder again)."""
    exe = str(Path(sys.executable).with_name("jupyter-book"))
    subprocess.run([sys.executable, "-m", "scripts.book_editions"], cwd=REPO, check=True, capture_output=True)
    editions = {
        "": [],
        "instructors_": ["--config", str(REPO / "_instructors/_config.yml"), "--toc", str(REPO / "_instructors/_toc.yml")],
    }
    times: dict[str, float] = {}
    for prefix, extra in editions.items():
        with tempfile.TemporaryDirectory() as scratch:
            command = [exe, "build", str(REPO), "--path-output", scratch, "-W", "-n", "--keep-going", "-q", *extra]
            times[f"{prefix}cold_s"] = _time(functools.partial(subprocess.run, command, check=True, capture_output=True))
            times[f"{prefix}warm_s"] = _time(functools.partial(subprocess.run, command, check=True, capture_output=True))
    return times


def bench_site() -> dict[str, float]:
    """tests/test_site.py alone: its builds of both editions and the browser tests, wall time."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_site.py"], cwd=REPO, capture_output=True)
    wall = time.perf_counter() - start
    builds = json.loads((REPO / "_build/site-tests/timings.json").read_text()) if done.returncode == 0 else {}
    return {"wall_s": wall, "exit_code": done.returncode, **{f"build_{k}_s": v for k, v in builds.items()}}


def bench_tests() -> dict[str, float]:
    """``make test`` as a developer runs it again (warm ``.venv``): its whole wall time (lint and
    pytest) and the time pytest reports."""
    start = time.perf_counter()
    done = subprocess.run(["make", "test"], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    seconds = float("nan")
    for line in done.stdout.splitlines()[::-1]:
        if " in " in line and ("passed" in line or "failed" in line):
            seconds = float(line.rsplit(" in ", 1)[1].split("s")[0])
            break
    return {"make_test_s": wall, "pytest_s": seconds, "exit_code": done.returncode}


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
    print(f"instructor edition: cold {book['instructors_cold_s']:.1f} s, warm {book['instructors_warm_s']:.1f} s")
    report["site_tests"] = site = bench_site()
    print(f"tests/test_site.py (builds + browser): {site['wall_s']:.1f} s (exit {site['exit_code']})")
    if not args.skip_tests:
        report["make_test"] = tests = bench_tests()
        print(f"make test: {tests['make_test_s']:.1f} s, pytest {tests['pytest_s']:.1f} s (exit {tests['exit_code']})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    for script in sorted((REPO / "bench").glob("bench_*.py")):
        print(f"\n== {script.name}")
        subprocess.run([sys.executable, str(script)], cwd=REPO, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
