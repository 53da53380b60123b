"""Benchmark a tracking server's start: a fresh ``mlflow server`` against one forked from the warm interpreter.

``scripts.mlops.contention.start_mlflow_server`` forks ``mlflow server`` from the warm
interpreter (:mod:`scripts.mlops.warm`) when one runs in the calling process, as in a forked
notebook kernel or a test process that has run workflow steps; otherwise it starts a fresh
interpreter (``MLOPS_COLD=1`` asks for that). Either way MLflow's launcher then starts the
uvicorn process that serves, as a fresh interpreter. Side by side in one run, alternating
(fresh, forked) ``--repeats`` times over a migrated SQLite store with one uvicorn worker (as the
invalid-Host drill starts it), this reports the median seconds from the start to ``/health``
answering 200, and the machine's CPU-seconds over the same span (``/proc/stat``: the launcher,
its uvicorn process and anything else running). Prints a table and writes
``bench/results/tracking_server.json``::

    .venv/bin/python bench/bench_tracking_server.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _results

from scripts.mlops import contention, warm


def _busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (every state but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _start_once(store_uri: str, folder: Path, forked: bool) -> tuple[float, float, str]:
    """One start to healthy; (seconds, CPU-seconds, which path ran)."""
    if forked:
        os.environ.pop("MLOPS_COLD", None)
    else:
        os.environ["MLOPS_COLD"] = "1"
    try:
        started, busy = time.perf_counter(), _busy_seconds()
        with contention.tracking_server(store_uri, folder / "art", folder / "server.log", workers=1) as server:
            seconds, cpu = time.perf_counter() - started, _busy_seconds() - busy
            path = "forked" if isinstance(server.process, warm.WarmProcess) else "fresh"
    finally:
        os.environ.pop("MLOPS_COLD", None)
    return seconds, cpu, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `make` exports it (a fork server must be single-threaded)
    os.environ.pop("MLOPS_COLD", None)
    warm.warm_up()
    runs: dict[str, dict[str, list[float]]] = {"fresh": {"s": [], "cpu_s": []}, "forked": {"s": [], "cpu_s": []}}
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as scratch:
        folder = Path(scratch)
        store_uri = contention.sqlite_store(folder / "store")
        _start_once(store_uri, folder, forked=True)  # the fork server has finished its imports
        for _ in range(args.repeats):
            for mode in ("fresh", "forked"):
                seconds, cpu, path = _start_once(store_uri, folder, forked=mode == "forked")
                if path != mode:
                    print(f"a {mode} start ran {path}: is OMP_NUM_THREADS or PYTHONPATH set differently?")
                    return 1
                runs[mode]["s"].append(round(seconds, 3))
                runs[mode]["cpu_s"].append(round(cpu, 3))
    medians = {mode: {key: statistics.median(values) for key, values in found.items()} for mode, found in runs.items()}
    ratio_s = medians["forked"]["s"] / medians["fresh"]["s"]
    ratio_cpu = medians["forked"]["cpu_s"] / medians["fresh"]["cpu_s"]
    print(f"{'mlflow server to healthy':28s}{'seconds':>9s}{'CPU-s':>8s}")
    for mode, values in medians.items():
        print(f"{mode:28s}{values['s']:8.2f}s{values['cpu_s']:8.2f}")
    print(f"forked vs fresh: {ratio_s:.2f}x the time, {ratio_cpu:.2f}x the CPU ({args.repeats} alternating runs)")
    result = {
        **_results.machine(),
        "repeats": args.repeats,
        "median": {mode: {key: round(value, 3) for key, value in values.items()} for mode, values in medians.items()},
        "forked_vs_fresh": {"s": round(ratio_s, 3), "cpu_s": round(ratio_cpu, 3)},
        "runs": runs,
    }
    _results.save("tracking_server", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
