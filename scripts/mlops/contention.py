"""Many writers, one tracking server: how a backend store copes with concurrent training clients.

The course's known-issues log reports ``database is locked`` errors and HTTP 503 answers when
several training jobs logged to one SQLite-backed ``mlflow server``. This module reproduces
that set-up on loopback and measures it; ``bench/bench_contention.py`` (the full measurement)
and ``tests/mlops/test_contention.py`` (a small bounded one in ``make test``) both use it.

* :func:`tracking_server` starts ``mlflow server`` on ``127.0.0.1`` over a given backend store,
  on a port the server binds itself (``--port 0``: no other process can take it between a choice
  and the bind), reads that port from the server's log, polls ``/health`` until a deadline, and
  always stops the server's whole process group, also when the body raises.
* :func:`sqlite_store` makes the SQLite store from a copy of an already-migrated empty
  database (:mod:`scripts.mlops.workspace` caches one per MLflow version); a fresh file would
  make the server run every schema migration first, which took minutes on a loaded machine.
* :func:`postgres_store` starts a real PostgreSQL from PyPI's ``pgserver`` wheel (no root, a
  unix socket in a temporary folder) and, by default, creates MLflow's schema in this process
  before any server sees it, timing both steps.
* :func:`measure` runs N writer processes at once against a server. Each writer opens a run
  and logs ``calls`` metric values one call at a time (the seed's pattern: a metric every
  epoch) or all of them in one ``log_metrics`` call (batched), with the client's retries
  switched off or on (:data:`RETRIES`). The writers are forked, together, from one process
  that has imported MLflow already, so its import cost stays out of the measurement.
  The result counts failed calls by kind (:func:`failure_kind`) and the slowest writer.
* :func:`landed` counts what each writer's run holds in the store afterwards, so a caller can
  check that every value the server acknowledged is there.

By hand: ``python -m scripts.mlops.contention URL CALLS MODE WRITERS``, then type ``go``.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import MlopsError
from .procs import Child, stop_session

Mode = Literal["one-by-one", "batched"]
MODES: tuple[Mode, ...] = ("one-by-one", "batched")
HOST = "127.0.0.1"
#: Seconds uvicorn's supervisor lets a server worker take to answer its ping (uvicorn's default: 5).
WORKER_HEALTHCHECK_S = 60
#: ``mlflow server`` also starts a job runner and a huey consumer with ten workers for MLflow's
#: GenAI jobs (scorers, trace roll-ups), which this course never uses. Both import MLflow: with
#: them a start used 31-44 CPU seconds over its first 20 s on this 2-core machine, without them
#: 12-13 (10 processes against 2). ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` is MLflow's own switch.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

#: The client's retry settings: ``off`` shows every failed request; ``on`` lets MLflow's HTTP
#: client retry 429/5xx answers and connection errors with exponential backoff.
RETRIES: dict[str, dict[str, str]] = {
    "off": {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"},
    "on": {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    },
}

#: The failures a contended store is known to cause, as :func:`failure_kind` names them.
DOCUMENTED_KINDS = ("database is locked", "HTTP 5xx", "timeout", "connection refused or reset")

#: What to install when PostgreSQL cannot be started.
POSTGRES_PACKAGES = "pgserver==0.1.4 psycopg2-binary==2.9.13 (both in requirements.txt: run `make venv`)"


# --- the tracking server -----------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingServer:
    """A running ``mlflow server``: where it listens, its process, its log, how long it took to answer."""

    url: str
    port: int
    process: Child
    log: Path
    seconds_to_healthy: float


def log_tail(log: Path, chars: int = 2000) -> str:
    """The last ``chars`` characters of a server log ('' when there is none)."""
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def start_mlflow_server(args: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path | None = None) -> Child:
    """``python -m mlflow server ARGS`` in a session of its own, its output to ``log`` (emptied first).

    When this process's warm interpreter is running (:mod:`scripts.mlops.warm`: a forked notebook
    kernel, or a test process that has run workflow steps) and ``env`` fits it, the command is
    forked from there: ``mlflow server`` imports MLflow and opens the store before it starts its
    uvicorn process, which a fork finds done (about 2 s and 2.5 CPU-s less per start on the course
    machine). The uvicorn process that serves is a fresh interpreter either way, as MLflow starts
    it. Otherwise the command runs in a fresh interpreter. Either way the caller owns the result
    and stops it with :func:`scripts.mlops.procs.stop_session`.
    """
    from . import warm

    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    folder = str(cwd if cwd is not None else Path.cwd())
    if warm.running() and warm.fits(env):
        return warm.start(["mlflow", "server", *args], env=env, cwd=folder, output=str(log), new_session=True)
    with log.open("wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "mlflow", "server", *args], cwd=folder, env=dict(env),
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


#: What uvicorn logs once it listens; with ``--port 0`` the port is the one the system gave it.
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def listening_port(process: Child, log: Path, timeout: float = 180.0) -> int:
    """The port a server started with ``--port 0`` listens on, read from ``log`` once uvicorn says so.

    Raises :class:`MlopsError` with the end of ``log`` when the process exits first or the
    deadline passes (the caller still owns the process and must stop it).
    """
    deadline = time.monotonic() + timeout
    while True:
        found = _LISTENING.search(log_tail(log, 1_000_000))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            raise MlopsError(
                f"mlflow server exited with status {process.returncode} before it listened; its log ends with:\n"
                f"{log_tail(log)}"
            )
        if time.monotonic() >= deadline:
            raise MlopsError(f"mlflow server did not listen within {timeout:g} s; its log ends with:\n{log_tail(log)}")
        time.sleep(0.05)


def wait_healthy(url: str, process: Child, log: Path, timeout: float = 180.0) -> float:
    """Poll ``url``/health until it answers 200; the seconds it took.

    Raises :class:`MlopsError` with the end of ``log`` when the process exits first or the
    deadline passes (the caller still owns the process and must stop it).
    """
    import httpx

    from .server import loopback_client

    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MlopsError(
                f"mlflow server at {url} exited with status {process.returncode}; its log ends with:\n{log_tail(log)}"
            )
        try:
            if loopback_client().get(f"{url}/health", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # a refused connection costs well under a millisecond
    raise MlopsError(
        f"mlflow server at {url} did not become healthy in {timeout:g} s; its log ends with:\n{log_tail(log)}"
    )


@contextmanager
def tracking_server(
    store_uri: str,
    artifacts: Path,
    log: Path,
    *,
    workers: int | None = None,
    timeout: float = 180.0,
) -> Iterator[TrackingServer]:
    """``mlflow server`` on 127.0.0.1 (a port it binds itself) over ``store_uri``, healthy, stopped on exit.

    ``seconds_to_healthy`` counts from the start of the command. The server runs in a session of
    its own (its uvicorn workers with it), so stopping it stops exactly that group, by id.
    ``workers`` defaults to MLflow's own default (4). Its output goes to ``log`` (a file, never a
    pipe nobody reads). The client environment's
    ``MLFLOW_TRACKING_URI`` is not passed on, and MLflow's job execution is off (:data:`SERVER_ENV`).
    """
    args = ["--host", HOST, "--port", "0",
            "--backend-store-uri", store_uri, "--default-artifact-root", artifacts.resolve().as_uri()]  # fmt: skip
    if workers is not None:
        args += ["--workers", str(workers)]
    # uvicorn kills a worker that does not answer its supervisor's ping within 5 s and starts
    # another: on a loaded machine a worker still importing MLflow misses it, again and again.
    args += ["--uvicorn-opts", f"--timeout-worker-healthcheck {WORKER_HEALTHCHECK_S}"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", **SERVER_ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    process = start_mlflow_server(args, env=env, log=log)
    try:
        port = listening_port(process, log, timeout)
        url = f"http://{HOST}:{port}"
        wait_healthy(url, process, log, max(1.0, started + timeout - time.monotonic()))
        yield TrackingServer(url, port, process, log, time.monotonic() - started)
    finally:
        stop_session(process)


# --- backend stores ----------------------------------------------------------------------------


def sqlite_store(folder: Path, *, migrated: bool = True) -> str:
    """The URI of a new SQLite store ``folder/mlflow.db``.

    ``migrated`` (the default) copies the migrated empty database that
    :mod:`scripts.mlops.workspace` caches, so the server starts without running the schema
    migrations; ``migrated=False`` leaves the file absent and the server creates it itself.
    """
    from .workspace import _seed_database

    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    if migrated:
        _seed_database(db, folder / "artifacts")
        if not db.is_file():
            raise MlopsError(f"no migrated MLflow database could be cached for {db}", "check that ~/.cache is writable")
    return f"sqlite:///{db.resolve()}"


def create_schema(store_uri: str, artifacts: Path) -> float:
    """Create MLflow's schema in ``store_uri`` in this process (MLflow's own migrations); the seconds taken."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    started = time.monotonic()
    store = SqlAlchemyStore(store_uri, artifacts.resolve().as_uri())
    store.engine.dispose()
    return time.monotonic() - started


@dataclass(frozen=True)
class PostgresStore:
    """A PostgreSQL started for one measurement: its SQLAlchemy URI and what starting it cost."""

    uri: str
    seconds_to_start: float
    seconds_to_migrate: float | None  # None: the schema was left for the server to create


@contextmanager
def postgres_store(artifacts: Path, *, migrated: bool = True) -> Iterator[PostgresStore]:
    """A real PostgreSQL (PyPI's ``pgserver``) in a temporary data folder of its own, stopped and removed on exit.

    The URI names the psycopg2 driver (``postgresql+psycopg2://``): SQLAlchemy would pick
    psycopg 3 for a bare ``postgresql://``, which is not installed. With ``migrated`` (the
    default) MLflow's schema is created here first (:func:`create_schema`, timed; the Default
    experiment's artifacts go to ``artifacts``). Raises :class:`MlopsError` naming the packages
    to install when PostgreSQL cannot be started.

    The data folder is a new one directly in the system's temporary folder, never below a
    caller's folder: run as root, pgserver starts PostgreSQL as a user of its own and opens
    every parent folder to it, and pytest sets its temporary root back to owner-only access
    whenever a test session starts, which would lock a running PostgreSQL out of its data.
    """
    try:
        import pgserver
        import psycopg2  # noqa: F401  (MLflow's driver for the URI below)
    except ImportError as exc:
        raise MlopsError(f"PostgreSQL cannot be started here: {exc}", f"install {POSTGRES_PACKAGES}") from None
    data = Path(tempfile.mkdtemp(prefix="mlops-pgdata-"))
    started = time.monotonic()
    try:
        try:
            server = pgserver.get_server(data / "pgdata", cleanup_mode="stop")
        except Exception as exc:  # initdb or pg_ctl failed: its message says why
            raise MlopsError(
                f"pgserver could not start PostgreSQL in {data}: {exc}",
                f"pgserver runs initdb and pg_ctl from its wheel: check {data.parent} is writable; "
                f"reinstall {POSTGRES_PACKAGES}",
            ) from exc
        try:
            seconds_to_start = time.monotonic() - started
            uri = server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)
            seconds_to_migrate = create_schema(uri, artifacts) if migrated else None
            yield PostgresStore(uri, seconds_to_start, seconds_to_migrate)
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(data, ignore_errors=True)


# --- writers -----------------------------------------------------------------------------------


@dataclass
class WriterReport:
    """What one writer process did: its run, the values the server acknowledged, its failures."""

    run_id: str | None
    attempted: int  # metric values the writer tried to log
    acknowledged: int  # metric values in calls the server answered with success
    failures: list[str] = field(default_factory=list)  # first line of each failed call
    seconds: float = float("nan")  # from the start signal to the run's end


def write(uri: str, calls: int, mode: Mode) -> WriterReport:
    """One training client: a run with ``calls`` metric values, logged one by one or in one batch.

    Every failed call is recorded (never raised), so a writer always reports. The active run is
    ended even after failures (``mlflow.start_run`` as a context manager).
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    report = WriterReport(run_id=None, attempted=calls, acknowledged=0)
    started = time.monotonic()
    try:
        with mlflow.start_run() as run:
            report.run_id = run.info.run_id
            if mode == "batched":
                try:
                    mlflow.log_metrics({f"m{i}": float(i) for i in range(calls)})
                    report.acknowledged = calls
                except Exception as exc:
                    report.failures.append(_first_line(exc))
            else:
                for i in range(calls):
                    try:
                        mlflow.log_metric(f"m{i % 9}", float(i), step=i)
                        report.acknowledged += 1
                    except Exception as exc:
                        report.failures.append(_first_line(exc))
    except Exception as exc:  # creating or ending the run failed
        report.failures.append("run: " + _first_line(exc))
    report.seconds = time.monotonic() - started
    return report


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:1000]


def failure_kind(message: str) -> str:
    """The documented kind of a failed call's message (:data:`DOCUMENTED_KINDS`), else ``other``."""
    lowered = message.lower()
    if "database is locked" in lowered:
        return "database is locked"
    if any(f"error code {code}" in lowered for code in (500, 502, 503, 504)) or "too many 5" in lowered:
        return "HTTP 5xx"
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    connection = (
        "connection refused",
        "connection reset",
        "connection aborted",
        "failed to establish a new connection",
    )
    if any(words in lowered for words in connection):
        return "connection refused or reset"
    return "other"


@dataclass
class Measurement:
    """N writers at once against one server: failed calls (by kind), the slowest writer, every report."""

    writers: int
    mode: Mode
    retries: str
    calls: int  # logging calls made in all (a batch is one call)
    failed_calls: int
    failure_kinds: dict[str, int]
    first_failures: list[str]
    slowest_writer_s: float
    wall_s: float
    reports: list[WriterReport]

    def summary(self) -> dict[str, Any]:
        """The measurement without its per-writer reports (for a results file)."""
        document = asdict(self)
        document.pop("reports")
        return document


#: The caller's MLflow session, which must not leak into writers aimed at another server:
#: ``mlflow.set_experiment`` exports ``MLFLOW_EXPERIMENT_ID`` into ``os.environ``, and an id from
#: the caller's store names no experiment (or the wrong one) on the measured server.
_CALLER_SESSION = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


def _writer_env(retries: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _CALLER_SESSION}
    return {**env, **RETRIES[retries], "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def measure(
    url: str, writers: int, calls: int, mode: Mode, retries: str = "off", *, timeout: float = 600.0
) -> Measurement:
    """Run ``writers`` writer processes at once against ``url`` and collect their reports.

    One launcher process (``python -m scripts.mlops.contention``, with the retry setting in its
    environment) imports MLflow, says it is ready and waits; on the start signal it forks the
    writers, so they start together and none pays MLflow's import (seconds on a loaded machine)
    inside the measurement. Each writer makes its own HTTP connections after the fork. A writer
    that crashes is reported as one failed call (``writer crashed``); when the launcher overruns
    ``timeout`` its whole session is stopped and every writer counts as ``writer timed out``, so
    the count never hides a missing writer.
    """
    if retries not in RETRIES:
        raise ValueError(f"retries must be one of {sorted(RETRIES)}, not {retries!r}")
    command = [sys.executable, "-m", "scripts.mlops.contention", url, str(calls), mode, str(writers)]
    launcher = subprocess.Popen(
        command,
        env=_writer_env(retries),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert launcher.stdout is not None and launcher.stdin is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:  # "ready" (or the end of its output) before the deadline
            selector.register(launcher.stdout, selectors.EVENT_READ)
            if selector.select(timeout=timeout):
                launcher.stdout.readline()
        started = time.monotonic()
        stdin, launcher.stdin = launcher.stdin, None  # communicate() below must not touch it again
        try:
            stdin.write("go\n")
            stdin.close()
        except (BrokenPipeError, OSError):
            pass  # it died while importing: reported below
        try:
            out, _ = launcher.communicate(timeout=max(1.0, deadline - time.monotonic()))
            reports = _reports(out, writers, calls, f"writer crashed (launcher exit status {launcher.returncode})")
        except subprocess.TimeoutExpired:
            reports = [WriterReport(None, calls, 0, ["writer timed out"]) for _ in range(writers)]
        wall = time.monotonic() - started
    finally:
        stop_session(launcher, grace=1.0)
    failures = [failure for report in reports for failure in report.failures]
    return Measurement(
        writers=writers,
        mode=mode,
        retries=retries,
        calls=writers * (1 if mode == "batched" else calls),
        failed_calls=len(failures),
        failure_kinds=dict(Counter(failure_kind(failure) for failure in failures)),
        first_failures=failures[:3],
        slowest_writer_s=round(max(report.seconds for report in reports), 2),
        wall_s=round(wall, 2),
        reports=reports,
    )


def _reports(out: str, writers: int, calls: int, missing: str) -> list[WriterReport]:
    """The launcher's per-writer reports (one JSON line each); a missing one counts as a crash."""
    reports = [WriterReport(**json.loads(line)) for line in out.splitlines() if line.startswith("{")]
    reports += [WriterReport(None, calls, 0, [missing]) for _ in range(writers - len(reports))]
    return reports


def landed(reports: Sequence[WriterReport], client: Any = None) -> dict[str, int]:
    """Metric values each reported run holds in the store, by run id (through ``MlflowClient``)."""
    import mlflow

    client = client or mlflow.MlflowClient()
    counts: dict[str, int] = {}
    for report in reports:
        if report.run_id is None:
            continue
        run = client.get_run(report.run_id)
        counts[report.run_id] = sum(len(client.get_metric_history(report.run_id, key)) for key in run.data.metrics)
    return counts


def machine() -> dict[str, Any]:
    """Where a measurement ran: platform, cores, load average, versions, UTC date."""
    import platform
    import sqlite3
    from datetime import UTC, datetime
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str] = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for package in ("mlflow", "pgserver", "psycopg2-binary"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "versions": versions,
    }


def _launch(argv: Sequence[str]) -> int:
    """The launcher process: import MLflow, say ``ready``, wait for ``go``, fork the writers, print their reports.

    Arguments: tracking URI, values per writer, mode, number of writers. Each writer's report is
    one JSON line; a writer that dies without one is left out (the caller counts it as crashed).
    """
    import mlflow  # noqa: F401  (imported once, before the start signal, and inherited by every writer)

    uri, calls, mode, writers = argv[0], int(argv[1]), argv[2], int(argv[3])
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {MODES}, not {mode!r}")
    print("ready", flush=True)
    sys.stdin.readline()
    children: list[tuple[int, int]] = []
    for _ in range(writers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # a writer: write, report on its pipe, leave without the parent's clean-up
            os.close(read_end)
            code = 1
            try:
                report = write(uri, calls, mode)
                os.write(write_end, json.dumps(asdict(report)).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        children.append((pid, read_end))
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            text = pipe.read().decode(errors="replace").strip()
        os.waitpid(pid, 0)
        if text.startswith("{"):
            print(text, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_launch(sys.argv[1:]))
