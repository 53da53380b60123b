"""Benchmark ``audit``: a cold ``python -m scripts.mlops audit BUNDLE``, as a reviewer types it.

Builds the production registry by the baseline recipe (``churn-classifier`` v1 @production) in a
temporary workspace, cuts its release bundle once, then runs the command line ``--repeats``
times in a fresh interpreter each, checking that every run accepts the bundle (exit 0). Reports
wall time, the CPU time of the command and its children, and the load average, and writes
``bench/results/audit.json``. Issue 13's target: under 5 s including the re-evaluation::

    .venv/bin/python bench/bench_audit.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = "churn-classifier"
TARGET_SECONDS = 5.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as scratch_name:
        scratch = Path(scratch_name)
        env = {**os.environ, "MLOPS_WORKSPACE_ROOT": str(scratch)}
        env.pop("MLFLOW_TRACKING_URI", None)
        baseline = scratch / "eval_baseline.json"
        setup = [
            ["baseline-refresh", "--out", str(baseline)],
            ["--workspace", "baseline-refresh", "bundle", "cut", "--model", MODEL, "--version", "1",
             "--baseline", str(baseline), "--out", str(scratch / "release-v1")],
        ]  # fmt: skip
        for command in setup:
            done = subprocess.run([sys.executable, "-m", "scripts.mlops", *command], cwd=REPO, env=env,
                                  capture_output=True, text=True)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"set-up {command} failed:\n{done.stdout}\n{done.stderr}")
        command = [sys.executable, "-m", "scripts.mlops", "--workspace", "baseline-refresh", "audit",
                   str(scratch / "release-v1")]  # fmt: skip
        walls, cpus, loads = [], [], []
        for _ in range(args.repeats):
            loads.append(os.getloadavg()[0])
            cpu, start = _children_cpu(), time.perf_counter()
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            cpus.append(_children_cpu() - cpu)
            if done.returncode != 0:
                raise SystemExit(f"audit exited {done.returncode}, expected 0 (accept):\n{done.stdout}\n{done.stderr}")
    result = {
        "command": "python -m scripts.mlops --workspace baseline-refresh audit release-v1",
        "wall_seconds": walls,
        "cpu_seconds": cpus,
        "wall_median": statistics.median(walls),
        "cpu_median": statistics.median(cpus),
        "load_average": loads,
        "target_seconds": TARGET_SECONDS,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"audit, cold, {args.repeats} runs (load {min(loads):.1f}-{max(loads):.1f}):")
    print(f"  wall  median {result['wall_median']:.2f} s  " + "  ".join(f"{w:.2f}" for w in walls))
    print(f"  cpu   median {result['cpu_median']:.2f} s  " + "  ".join(f"{c:.2f}" for c in cpus))
    print(f"  target < {TARGET_SECONDS:.0f} s: {'met' if result['wall_median'] < TARGET_SECONDS else 'missed'}")
    out = REPO / "bench" / "results" / "audit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
