"""Stopping one process by its id (``procs.stop_pid``): the fix the port and lock drills teach."""

from __future__ import annotations

import subprocess
import sys
import time

from scripts.mlops import procs

#: Ignores SIGTERM (as a hung server might), says so, then waits.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def _started(code: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    return process


def test_a_process_that_honours_sigterm_is_gone_at_once() -> None:
    process = _started("import time; print('ready', flush=True); time.sleep(60)")
    started = time.monotonic()
    assert procs.stop_pid(process.pid, grace=5.0)
    took = time.monotonic() - started
    assert process.wait(5) == -15  # SIGTERM ended it, not SIGKILL
    assert took < 1.0, f"stop_pid took {took:.2f} s for a process that ends on SIGTERM"


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    process = _started(STUBBORN)
    started = time.monotonic()
    assert procs.stop_pid(process.pid, grace=0.5)
    took = time.monotonic() - started
    assert process.wait(5) == -9
    assert 0.5 <= took < 3.0, took


def test_a_process_that_is_already_gone_counts_as_stopped() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(10)
    assert procs.stop_pid(process.pid)
