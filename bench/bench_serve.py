"""Benchmark the model server against ``mlflow models serve`` and a no-op endpoint, side by side.

One run trains and registers one model in a scratch workspace, then measures, for
single-record requests over loopback (one keep-alive ``httpx.Client``, requests one after
another, the same records for everyone):

* ``/predict`` latency p50 / p99, requests per second and the count of 5xx answers of
  (a) the project's server (:mod:`scripts.mlops.server`, forked from the warm interpreter),
  (b) ``mlflow models serve -m models:/NAME/VERSION --env-manager local`` (its ``/invocations``
  with ``{"dataframe_records": [...]}``), and (c) a no-op FastAPI endpoint that echoes the body
  without validation, under the same uvicorn settings as (a): the floor of HTTP + JSON here;
* start to healthy, median of ``--starts`` starts: the project's server in a fresh interpreter
  (``MLOPS_COLD=1``) and forked from the warm one, and ``mlflow models serve`` (to ``/ping``).

Prints a table with ratios and writes ``bench/results/serve.json``. Run from the repository root::

    .venv/bin/python bench/bench_serve.py [--requests 1000] [--starts 3] [--model-kind hgb]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scripts.mlops import data, promotion, server, warm, workspace
from scripts.mlops.procs import free_port, stop_session
from scripts.mlops.train import TrainConfig, train_and_log

REPO = Path(__file__).resolve().parents[1]
MODEL = "churn-classifier"
ALIAS = "production"
TARGETS = {"predict_p50_ms": 2.0, "predict_p50_vs_mlflow": 0.25, "start_median_s": 2.5, "start_vs_mlflow": 0.5}
WARMUP = 50

#: (c): the same uvicorn settings as the project's server, an endpoint that only echoes the body.
NOOP_SERVER = """
import socket, sys
import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()

@app.post("/predict")
async def predict(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")

@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}

sock = socket.socket(fileno=int(sys.argv[1]))
config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", loop="uvloop", http="httptools")
uvicorn.Server(config).run(sockets=[sock])
"""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank, of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def latency(url: str, bodies: list[bytes], n: int) -> dict[str, float]:
    """p50/p99/mean in ms, requests per second and 5xx count of ``n`` POSTs to ``url`` (keep-alive)."""
    import httpx

    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30.0) as client:
        for body in bodies[:WARMUP]:
            client.post(url, content=body, headers=headers).raise_for_status()
        timings, errors, other = [], 0, 0
        began = time.perf_counter()
        for i in range(n):
            start = time.perf_counter()
            response = client.post(url, content=bodies[i % len(bodies)], headers=headers)
            timings.append(time.perf_counter() - start)
            errors += response.status_code >= 500
            other += 400 <= response.status_code < 500
        wall = time.perf_counter() - began
    return {
        "n": n,
        "p50_ms": round(percentile(timings, 0.50) * 1000, 3),
        "p99_ms": round(percentile(timings, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(timings) * 1000, 3),
        "per_second": round(n / wall, 1),
        "5xx": errors,
        "4xx": other,
    }


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with {process.returncode} before it was ready")
        try:  # one client: httpx.get builds an SSL context per call (27 ms of CPU the server would compete with)
            if server.loopback_client().get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} was not ready within {timeout:.0f} s")


@contextmanager
def mlflow_serve(version: int) -> Iterator[tuple[str, float]]:
    """``mlflow models serve`` of ``models:/MODEL/version`` on a free port: (base URL, start-to-ready s)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}/{version}"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, **server.child_tracking_env(), "MLFLOW_DISABLE_TELEMETRY": "true"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # it runs `uvicorn`
    began = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/ping", process)
        yield url, time.perf_counter() - began
    finally:
        stop_session(process)


@contextmanager
def noop_serve() -> Iterator[str]:
    """The no-op echo endpoint (c) in a fresh interpreter, on an inherited listening socket."""
    from scripts.mlops.app import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    process = subprocess.Popen(
        [sys.executable, "-c", NOOP_SERVER, str(sock.fileno())],
        pass_fds=(sock.fileno(),),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    try:
        wait_ready(f"{url}/health", process)
        yield url
    finally:
        stop_session(process)


def project_start(cold: bool) -> float:
    os.environ["MLOPS_COLD"] = "1" if cold else "0"
    began = time.perf_counter()
    with server.running_server(MODEL, ALIAS):
        return time.perf_counter() - began


def mlflow_start(version: int) -> float:
    with mlflow_serve(version) as (_url, seconds):
        return seconds


def medians(label: str, runs: list[float]) -> dict[str, Any]:
    return {"runs_s": [round(t, 2) for t in runs], "median_s": round(statistics.median(runs), 2), "label": label}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per server (default 1000)")
    parser.add_argument("--starts", type=int, default=3, help="starts to time per kind of server (default 3)")
    parser.add_argument("--model-kind", choices=("hgb", "logreg"), default="hgb")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "serve.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        os.chdir(scratch)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        ws = workspace.open_workspace("bench-serve")
        paths = data.write_datasets(ws.data_dir)
        result = train_and_log(paths["v1"], paths["eval"], TrainConfig(model=args.model_kind), register=MODEL)
        version = int(result.version or 1)
        promotion.promote(MODEL, version, ALIAS, reason="benchmark")
        frame = data.features(data.load(paths["eval"])).head(200)
        records = json.loads(frame.to_json(orient="records"))
        ours = [json.dumps({"records": [record]}).encode() for record in records]
        theirs = [json.dumps({"dataframe_records": [record]}).encode() for record in records]

        warm.warm_up()
        with server.running_server(MODEL, ALIAS) as running:
            health = running.health()
            http_ours = latency(f"{running.url}/predict", ours, args.requests)
        with mlflow_serve(version) as (url, _seconds):
            http_mlflow = latency(f"{url}/invocations", theirs, args.requests)
        with noop_serve() as url:
            http_noop = latency(f"{url}/predict", ours, args.requests)

        starts: dict[str, Callable[[], float]] = {
            "project_fresh": lambda: project_start(cold=True),
            "project_warm_fork": lambda: project_start(cold=False),
            "mlflow_models_serve": lambda: mlflow_start(version),
        }
        start = {name: medians(name, [run() for _ in range(args.starts)]) for name, run in starts.items()}
        os.chdir(REPO)

    import mlflow
    import sklearn

    mlflow_s = start["mlflow_models_serve"]["median_s"]
    p50_ratio = round(http_ours["p50_ms"] / http_mlflow["p50_ms"], 3)
    start_ratio = round(start["project_warm_fork"]["median_s"] / mlflow_s, 3)
    document = {
        "model": f"models:/{MODEL}@{ALIAS} ({args.model_kind})",
        "loader": health.get("loader"),
        "requests": args.requests,
        "predict": {"project": http_ours, "mlflow_models_serve": http_mlflow, "noop_fastapi": http_noop},
        "predict_p50_vs_mlflow": p50_ratio,
        "predict_p50_over_noop_ms": round(http_ours["p50_ms"] - http_noop["p50_ms"], 3),
        "start_to_healthy": start,
        "start_fresh_vs_mlflow": round(start["project_fresh"]["median_s"] / mlflow_s, 3),
        "start_warm_vs_mlflow": start_ratio,
        "targets": TARGETS,
        "meets_targets": {
            "predict_p50_ms": http_ours["p50_ms"] <= TARGETS["predict_p50_ms"],
            "predict_p50_vs_mlflow": p50_ratio <= TARGETS["predict_p50_vs_mlflow"],
            "no_5xx": http_ours["5xx"] == 0,
            "start_median_s": start["project_warm_fork"]["median_s"] <= TARGETS["start_median_s"],
            "start_vs_mlflow": start_ratio <= TARGETS["start_vs_mlflow"],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
            "mlflow": mlflow.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")

    print(f"model {document['model']}, loader {document['loader']}, {args.requests} single-record requests each")
    print(f"{'POST, 1 record':32s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>8s} {'5xx':>5s} {'p50 vs mlflow':>14s}")
    rows = (
        ("(a) project /predict", http_ours),
        ("(b) mlflow models serve", http_mlflow),
        ("(c) no-op FastAPI", http_noop),
    )
    for label, row in rows:
        ratio = row["p50_ms"] / http_mlflow["p50_ms"]
        print(
            f"{label:32s} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['per_second']:8.1f} {row['5xx']:5d} {ratio:13.2f}x"
        )
    print(f"{'start to healthy':32s} {'median s':>8s} {'runs':>20s} {'vs mlflow':>10s}")
    for name, row in start.items():
        print(f"{name:32s} {row['median_s']:8.2f} {str(row['runs_s']):>20s} {row['median_s'] / mlflow_s:9.2f}x")
    for name, ok in document["meets_targets"].items():
        print(f"target {name} ({TARGETS.get(name, 0)}): {'met' if ok else 'NOT met'}")
    print(f"load average {document['machine']['load_average']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
