"""SQLite and PostgreSQL behind a real ``mlflow server`` under concurrent writers, with a small bounded load.

The full measurement is ``bench/bench_contention.py`` (results in bench/results/contention.json,
drawn in chapter 05). Here each backend gets the same small load: WRITERS writer processes at
once, each logging CALLS metric values one call at a time, with the client's retries off so
every failed request counts. Traffic goes only to 127.0.0.1; every server is stopped.

* PostgreSQL (a real one, from PyPI's ``pgserver``) must fail no call, and every value must land.
* SQLite: what is true whatever the machine's load: every writer reports, every value the
  server acknowledged is in the store (and nothing beyond what was attempted), and a failed
  call, if any, is of a documented kind ("database is locked", HTTP 5xx, timeout).

The failure counts are printed (``-s``) and recorded as test properties.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts.mlops import contention, procs
from scripts.mlops.errors import MlopsError

WRITERS, CALLS = 4, 20
#: One uvicorn worker: its thread pool still writes to the store over several connections at
#: once, and the server starts in half the time of two workers on a loaded 2-core machine.
SERVER_WORKERS = 1


def _measure_behind_server(store_uri: str, folder: Path) -> tuple[contention.Measurement, dict[str, int], float]:
    """Start a server over ``store_uri``, run the load, count what landed; the server is stopped after."""
    import mlflow

    with contention.tracking_server(store_uri, folder / "art", folder / "server.log", workers=SERVER_WORKERS) as server:
        assert not [line for line in _session_commands(server.process.pid) if "huey" in line or "_job_runner" in line], (
            "the server started MLflow's job runner: SERVER_ENV must switch job execution off"
        )
        result = contention.measure(server.url, WRITERS, CALLS, "one-by-one", "off", timeout=180)
        counts = contention.landed(result.reports, mlflow.MlflowClient(server.url))
    assert server.process.poll() is not None, "the server was stopped"
    assert _session_commands(server.process.pid) == [], "a process of the server's session (uvicorn) outlived it"
    return result, counts, server.seconds_to_healthy


def _session_commands(session: int) -> list[str]:
    """The command lines of every process in session ``session`` (the server and its children)."""
    commands = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    commands.append(procs.cmdline(int(entry.name)))
            except ProcessLookupError:
                continue  # the process ended while we looked
    return commands


def _report(backend: str, result: contention.Measurement, started: float, healthy: float,
            record_property: Callable[[str, Any], None]) -> None:  # fmt: skip
    print(f"\n{backend}: {WRITERS} writers x {CALLS} calls, retries off: {result.failed_calls} of {result.calls} "
          f"calls failed {result.failure_kinds or ''}; slowest writer {result.slowest_writer_s} s; server healthy "
          f"after {healthy:.1f} s; test {time.monotonic() - started:.1f} s")  # fmt: skip
    record_property(f"{backend}_failed_calls", result.failed_calls)
    record_property(f"{backend}_failure_kinds", result.failure_kinds)


def _assert_every_writer_reported(result: contention.Measurement) -> None:
    assert len(result.reports) == WRITERS
    for report in result.reports:
        assert not any(f.startswith(("writer crashed", "writer timed out")) for f in report.failures), report.failures
        assert report.attempted == CALLS and report.seconds == report.seconds  # not NaN: it ran to the end


@pytest.mark.slow
def test_sqlite_behind_a_server_keeps_every_acknowledged_value(
    tmp_path: Path, record_property: Callable[[str, Any], None]
) -> None:
    started = time.monotonic()
    result, counts, healthy = _measure_behind_server(contention.sqlite_store(tmp_path / "store"), tmp_path)
    _report("sqlite", result, started, healthy, record_property)
    _assert_every_writer_reported(result)
    undocumented = [f for f in result.first_failures if contention.failure_kind(f) == "other"]
    assert "other" not in result.failure_kinds, f"failures of an undocumented kind: {undocumented}"
    assert sum(counts.values()) > 0, "values reached the store"
    for report in result.reports:
        if report.run_id is None:  # the run itself was refused: a documented failure, nothing to count
            assert report.failures and report.acknowledged == 0
            continue
        held = counts[report.run_id]
        assert report.acknowledged <= held <= report.attempted, (
            f"run {report.run_id}: {report.acknowledged} values acknowledged, {held} in the store"
        )


@pytest.mark.slow
def test_postgres_behind_a_server_fails_no_call_at_the_same_load(
    tmp_path: Path, record_property: Callable[[str, Any], None]
) -> None:
    started = time.monotonic()
    try:
        with contention.postgres_store(tmp_path / "art") as postgres:
            result, counts, healthy = _measure_behind_server(postgres.uri, tmp_path)
    except MlopsError as exc:  # pgserver missing or unable to start: say what to install, never skip
        pytest.fail(f"{exc}")
    _report("postgres", result, started, healthy, record_property)
    print(f"postgres: started in {postgres.seconds_to_start:.1f} s, schema created in {postgres.seconds_to_migrate:.1f} s")
    _assert_every_writer_reported(result)
    assert result.failed_calls == 0, result.first_failures
    assert sorted(counts.values()) == [CALLS] * WRITERS, "every value of every writer is in the store"
    assert {report.run_id for report in result.reports} == set(counts)


def test_a_server_that_exits_fails_the_health_wait_with_its_log(tmp_path: Path) -> None:
    """The health wait stops at once when the process exits, and the error carries the end of its log."""
    import subprocess
    import sys

    log = tmp_path / "server.log"
    log.write_text("Error initializing backend store: no such scheme\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    started = time.monotonic()
    with pytest.raises(MlopsError, match="exited with status 3") as raised:
        contention.wait_healthy("http://127.0.0.1:9", process, log, timeout=60)
    assert "no such scheme" in str(raised.value) and time.monotonic() - started < 30


def test_the_port_a_server_bound_itself_is_read_from_its_log(tmp_path: Path) -> None:
    """``--port 0``: the server's log names the port once it listens; a server that exits first
    fails at once with its log, and one that never says so fails at the deadline."""
    import subprocess

    log = tmp_path / "server.log"
    log.write_text("")
    says = f"sleep 0.3; echo 'INFO:     Uvicorn running on http://127.0.0.1:43210 (Press CTRL+C to quit)' >> {log}; sleep 30"
    process = subprocess.Popen(["sh", "-c", says])
    try:
        assert contention.listening_port(process, log, timeout=30) == 43210
    finally:
        process.kill()
        process.wait()
    log.write_text("ERROR:    [Errno 98] error while attempting to bind\n")
    exited = subprocess.Popen(["sh", "-c", "exit 1"])
    with pytest.raises(MlopsError, match="exited with status 1 before it listened") as raised:
        contention.listening_port(exited, log, timeout=30)
    assert "Errno 98" in str(raised.value)
    silent = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(MlopsError, match="did not listen within 0.5 s"):
            contention.listening_port(silent, log, timeout=0.5)
    finally:
        silent.kill()
        silent.wait()


@pytest.mark.slow
def test_failed_calls_are_counted_by_kind_when_nothing_listens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The count can fail: writers aimed at a closed port report every refused run, as a connection failure.

    The caller's MLflow session stays out of the writers: ``mlflow.set_experiment`` in this
    process (an earlier test, a notebook) exports an experiment id that names nothing there.
    """
    from scripts.mlops.procs import free_port

    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "1")

    result = contention.measure(f"http://127.0.0.1:{free_port()}", 2, 3, "one-by-one", "off", timeout=120)
    assert len(result.reports) == 2 and result.failed_calls == 2
    assert all(report.run_id is None and report.acknowledged == 0 for report in result.reports)
    assert result.failure_kinds == {"connection refused or reset": 2}, result.first_failures


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("(sqlite3.OperationalError) database is locked", "database is locked"),
        ("API request to endpoint /api/2.0/mlflow/runs/log-metric failed with error code 503 != 200", "HTTP 5xx"),
        ("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/create failed with exception "
         "HTTPConnectionPool(host='127.0.0.1', port=5000): Read timed out. (read timeout=30)", "timeout"),  # fmt: skip
        ("Max retries exceeded with url: /x (Caused by ResponseError('too many 500 error responses'))", "HTTP 5xx"),
        ("RESOURCE_DOES_NOT_EXIST: Run 'x' not found", "other"),
    ],
)
def test_failure_kinds(message: str, kind: str) -> None:
    assert contention.failure_kind(message) == kind
