"""Benchmark the model server: ``/predict`` latency and throughput, and start-up time.

Measures, for single-record requests over loopback (one keep-alive ``httpx.Client``,
requests sent one after another):

* ``/predict`` latency p50 / p99 and requests per second;
* the floor: in-process ``pyfunc.predict`` on the same records (what the model costs without
  HTTP, JSON or validation);
* server start time, from launching ``python -m scripts.mlops serve`` to the first healthy
  ``/health`` (median of 3 starts), in a fresh interpreter and forked from the warm one.

Prints a table and writes ``bench/results/serve.json``. Run from the repository root::

    .venv/bin/python bench/bench_serve.py [--requests 500] [--starts 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.mlops import data, promotion, server, workspace
from scripts.mlops.train import TrainConfig, train_and_log

REPO = Path(__file__).resolve().parents[1]


MODEL = "churn-classifier"
ALIAS = "production"
TARGETS = {"predict_p50_ms": 5.0, "start_to_healthy_s": 5.0}
WARMUP = 20


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank, of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summarize(seconds: list[float], wall: float) -> dict[str, float]:
    return {
        "n": len(seconds),
        "p50_ms": round(percentile(seconds, 0.50) * 1000, 3),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(seconds) * 1000, 3),
        "per_second": round(len(seconds) / wall, 1),
    }


def bench_in_process(records: list[dict[str, Any]], n: int) -> dict[str, float]:
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@{ALIAS}")
    frames = [pd.DataFrame([record], columns=list(data.FEATURES)) for record in records]
    for frame in frames[:WARMUP]:
        model.predict(frame)
    timings = []
    began = time.perf_counter()
    for i in range(n):
        start = time.perf_counter()
        model.predict(frames[i % len(frames)])
        timings.append(time.perf_counter() - start)
    return summarize(timings, time.perf_counter() - began)


def bench_http(url: str, records: list[dict[str, Any]], n: int) -> dict[str, float]:
    import httpx

    bodies = [json.dumps({"records": [record]}).encode() for record in records]
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=10.0) as client:  # one keep-alive connection
        for body in bodies[:WARMUP]:
            client.post("/predict", content=body, headers=headers).raise_for_status()
        timings = []
        began = time.perf_counter()
        for i in range(n):
            start = time.perf_counter()
            response = client.post("/predict", content=bodies[i % len(bodies)], headers=headers)
            timings.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise SystemExit(f"request {i} failed: {response.status_code} {response.text}")
    return summarize(timings, time.perf_counter() - began)


def bench_start(starts: int) -> dict[str, Any]:
    """Start to healthy, side by side: a fresh interpreter per server (``MLOPS_COLD=1``) and a
    child of the warm interpreter (:mod:`scripts.mlops.warm`, the default). The warm
    interpreter's own first start (its imports, once per notebook or test run) is reported apart."""
    from scripts.mlops import warm

    def timed() -> float:
        began = time.perf_counter()
        with server.running_server(MODEL, ALIAS):
            return time.perf_counter() - began

    os.environ["MLOPS_COLD"] = "1"
    fresh = [timed() for _ in range(starts)]
    os.environ["MLOPS_COLD"] = "0"
    first = timed()  # includes starting the fork server and its imports
    forked = [timed() for _ in range(starts)]
    assert warm.enabled()
    return {
        "fresh_runs_s": [round(t, 2) for t in fresh],
        "fresh_median_s": round(statistics.median(fresh), 2),
        "warm_first_s": round(first, 2),
        "warm_runs_s": [round(t, 2) for t in forked],
        "median_s": round(statistics.median(forked), 2),
        "warm_vs_fresh": round(statistics.median(forked) / statistics.median(fresh), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="timed requests per measurement (default 500)")
    parser.add_argument("--starts", type=int, default=3, help="server starts to time (default 3)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "serve.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        os.chdir(scratch)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        ws = workspace.open_workspace("bench-serve")
        paths = data.write_datasets(ws.data_dir)
        result = train_and_log(paths["v1"], paths["eval"], TrainConfig(model="logreg"), register=MODEL)
        promotion.promote(MODEL, int(result.version or 1), ALIAS, reason="benchmark")
        frame = data.features(data.load(paths["eval"])).head(200)
        records = json.loads(frame.to_json(orient="records"))

        floor = bench_in_process(records, args.requests)
        start = bench_start(args.starts)
        with server.running_server(MODEL, ALIAS) as running:
            http = bench_http(running.url, records, args.requests)
        os.chdir(REPO)

    import mlflow
    import sklearn

    document = {
        "model": f"models:/{MODEL}@{ALIAS}",
        "requests": args.requests,
        "http_predict": http,
        "in_process_pyfunc_predict": floor,
        "http_overhead_p50_ms": round(http["p50_ms"] - floor["p50_ms"], 3),
        "start_to_healthy": start,
        "targets": TARGETS,
        "meets_targets": {
            "predict_p50_ms": http["p50_ms"] < TARGETS["predict_p50_ms"],
            "start_to_healthy_s": start["median_s"] < TARGETS["start_to_healthy_s"],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "mlflow": mlflow.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")

    print(f"{'measurement':34s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>8s}")
    for label, row in (("HTTP /predict (1 record)", http), ("in-process pyfunc.predict (floor)", floor)):
        print(f"{label:34s} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['per_second']:8.1f}")
    print(f"{'HTTP overhead at p50':34s} {document['http_overhead_p50_ms']:8.2f}")
    print(f"start to healthy, fresh interpreter: median {start['fresh_median_s']:.2f} s of {start['fresh_runs_s']}")
    print(f"start to healthy, forked (warm):     median {start['median_s']:.2f} s of {start['warm_runs_s']} "
          f"({start['warm_vs_fresh']:.2f}x; the warm interpreter's first start: {start['warm_first_s']:.2f} s)")
    for name, ok in document["meets_targets"].items():
        print(f"target {name} < {TARGETS[name]}: {'met' if ok else 'NOT met'}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
