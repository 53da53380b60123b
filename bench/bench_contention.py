"""Benchmark SQLite behind a real ``mlflow server`` under concurrent writers (issue 12's contention drill).

Starts ``mlflow server`` on 127.0.0.1 (a free port, a fresh SQLite file, its default 4
workers), then for each number of writers runs that many client processes at once. Each
writer opens a run and logs ``--metrics`` values one call at a time (the seed's pattern:
metrics every epoch) or in one batch (``log_metrics``, the seed's fix), with the client's
retries switched off (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``) so every failed request shows.
It counts failed calls ("database is locked", 5xx, timeouts) and the slowest writer's time.

Prints a table and writes ``bench/results/contention.json``. Run from the repository root::

    .venv/bin/python bench/bench_contention.py [--writers 4 8 16] [--metrics 100]

Measured on the course machine (2 cores, shared, load average 4-7), retries off: with 100
single-metric calls per writer, 0 failed calls at 4, 8 and 16 writers (slowest writer 19 s,
22 s, 48 s); with 50 calls and 4 writers, one-by-one 0 of 200 failed (slowest 39 s) and batched
0 of 4 failed (slowest 2.1 s). The seed's ``database is locked`` / 503 errors did not appear at
these loads: the server serialises the writes and every writer slows down instead, and
batching removes almost all of the wait.

``--backends sqlite postgres`` runs the same load against a PostgreSQL backend store as well: a
real PostgreSQL 16 started from PyPI's ``pgserver`` wheel (no root, unix socket in the temp
folder; install bench/requirements-postgres.txt first, it is not part of requirements.txt).
Measured with ``--writers 4 8 --metrics 50 --modes one-by-one`` at load average 6-19 (another
session's tests running): SQLite 0 of 200 and 0 of 400 calls failed (slowest writer 31 s, 20 s),
PostgreSQL 0 of 200 and 0 of 400 (60 s, 38 s); the server needed 121 s (SQLite) and 147 s
(PostgreSQL) to run its schema migrations and answer /health. At this load the timings are
noise; neither backend produced an error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

WRITER = textwrap.dedent(
    """
    import json, sys, time
    import mlflow

    uri, metrics, batched = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "batched"
    mlflow.set_tracking_uri(uri)
    failures, start = [], time.monotonic()
    try:
        with mlflow.start_run():
            if batched:
                mlflow.log_metrics({f"m{i}": float(i) for i in range(metrics)})
            else:
                for i in range(metrics):
                    try:
                        mlflow.log_metric(f"m{i % 9}", float(i), step=i)
                    except Exception as exc:
                        failures.append(str(exc).splitlines()[0][:200])
    except Exception as exc:
        failures.append("run: " + str(exc).splitlines()[0][:200])
    print(json.dumps({"failures": failures, "seconds": time.monotonic() - start}))
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_store(folder: Path) -> tuple[Any, str]:
    """A real PostgreSQL from PyPI's ``pgserver`` (no root, unix socket in ``folder``): the server and its URI.

    MLflow's SQLAlchemy picks the psycopg 3 dialect for ``postgresql://``; this bench installs
    ``psycopg2-binary`` (bench/requirements-postgres.txt), so the URI names that driver.
    """
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError:
        raise SystemExit("--backend postgres needs: .venv/bin/pip install -r bench/requirements-postgres.txt") from None
    server = pgserver.get_server(folder / "pg", cleanup_mode="stop")
    return server, server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)


def start_server(folder: Path, store: str | None = None, timeout: float = 180) -> tuple[subprocess.Popen[bytes], str]:
    """``mlflow server`` on ``store`` (default a fresh SQLite file), in a session of its own; waits for /health."""
    store = store or f"sqlite:///{folder / 'mlflow.db'}"
    port = free_port()
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", store, "--default-artifact-root", str(folder / "art")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(process)
    raise SystemExit(f"mlflow server did not start; see {folder / 'server.log'}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole session (its workers and job runner too), by its process group id."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=15)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_writers(url: str, writers: int, metrics: int, mode: str) -> dict[str, Any]:
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
           "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    start = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, str(metrics), mode], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        for _ in range(writers)
    ]
    reports = []
    for process in procs:
        out, _ = process.communicate(timeout=600)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        reports.append(json.loads(lines[-1]) if lines else {"failures": ["writer crashed"], "seconds": float("nan")})
    failures = [f for r in reports for f in r["failures"]]
    return {
        "writers": writers,
        "mode": mode,
        "calls": writers * (1 if mode == "batched" else metrics),
        "failed_calls": len(failures),
        "first_failures": failures[:3],
        "slowest_writer_s": round(max(r["seconds"] for r in reports), 2),
        "wall_s": round(time.monotonic() - start, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--metrics", type=int, default=100)
    parser.add_argument("--modes", nargs="+", default=["one-by-one", "batched"], choices=["one-by-one", "batched"])
    parser.add_argument("--backends", nargs="+", default=["sqlite"], choices=["sqlite", "postgres"],
                        help="backend stores to compare (postgres: bench/requirements-postgres.txt)")  # fmt: skip
    args = parser.parse_args()
    rows = []
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix="mlops-contention-") as scratch:
            database, store = postgres_store(Path(scratch)) if backend == "postgres" else (None, None)
            try:
                started = time.monotonic()
                process, url = start_server(Path(scratch), store, timeout=600)  # migrations on PostgreSQL take minutes
                print(f"{backend}: mlflow server healthy after {time.monotonic() - started:.0f} s")
                try:
                    for writers in args.writers:
                        for mode in args.modes:
                            row = {"backend": backend, **run_writers(url, writers, args.metrics, mode)}
                            rows.append(row)
                            print(f"{backend:8s} {writers:3d} writers  {mode:10s}  {row['failed_calls']:4d} of "
                                  f"{row['calls']:5d} calls failed  slowest writer {row['slowest_writer_s']:6.1f} s  "
                                  f"{row['first_failures'][:1]}")  # fmt: skip
                finally:
                    stop(process)
            finally:
                if database is not None:
                    database.cleanup()
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {"machine": platform.platform(), "cpus": os.cpu_count(), "metrics": args.metrics, "rows": rows}
    (RESULTS / "contention.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
