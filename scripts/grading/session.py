"""Run one submission's plan in its own sandbox and read its workspace afterwards.

:func:`run` starts ``python -m scripts.grading.runner`` inside a fresh sandbox (or, with
``sandboxed=False``, as a plain subprocess; or, given the grader's zygote, forks a warm runner into
the fresh sandbox: :mod:`scripts.grading.zygote`), feeds it the plan, reads its JSON lines with a
size cap, enforces a wall-clock budget for the whole submission, and makes sure every process
it started is gone when it returns. :func:`probe` then reads the workspace's registry in a
fresh process (sandboxed too, the workspace read-only).
"""

from __future__ import annotations

import atexit
import base64
import binascii
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import sandbox
from .plan import Plan
from .zygote import Zygote, ZygoteError, leaf_of

MAX_LINE = 40_000_000  # bytes per result line (answers and a registry snapshot included)
MAX_LINES = 2_000
STARTUP = 120.0  # seconds for the sandbox and kernel to start
MAX_FACTS = 5_000_000
#: What bubblewrap runs in a sandbox that a warm runner is placed into: it only keeps the sandbox alive.
PLACEHOLDER = shutil.which("sleep") or "/usr/bin/sleep"
#: The first cache :func:`prepare_cache` made in this process, kept in a private copy outside every
#: output folder and sandbox; later calls copy it instead of migrating a database again.
_prepared: Path | None = None
_preparing = threading.Lock()  # two batches graded at once (threads) make it once, not twice


@dataclass
class Outcome:
    """What came out of a submission's sandbox."""

    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, bytes] = field(default_factory=dict)  # cell id -> SQLite database
    events: list[str] = field(default_factory=list)
    stderr: str = ""
    finished: bool = False


def _popen(
    argv: list[str], cwd: Path, env: dict[str, str], limits: sandbox.Limits, cgroup: sandbox.Cgroup, stderr: Any
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        preexec_fn=sandbox.limiter(limits, cgroup),
        start_new_session=True,
        close_fds=True,
    )


def _argv(
    inner: list[str], workdir: Path, sandboxed: bool, cache: Path | None, writable: bool = True
) -> tuple[list[str], Path, dict[str, str]]:
    if sandboxed:
        return sandbox.command(inner, workdir, writable=writable, cache=cache), workdir, sandbox.environment()
    home = workdir / ".home"
    home.mkdir(exist_ok=True)
    cache_dir = workdir / ".cache"
    if cache is not None and not (cache_dir / "mlops-labs").exists():
        shutil.copytree(cache, cache_dir / "mlops-labs")
    env = sandbox.environment({"HOME": str(home), "TMPDIR": str(home), "XDG_CACHE_HOME": str(cache_dir)})
    return inner, workdir, env


def _terminate(process: subprocess.Popen[bytes], cgroup: sandbox.Cgroup) -> None:
    """Kill the sandbox (its PID namespace goes with it), the process group, and the cgroup's rest."""
    for target in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    cgroup.kill_all()


def placed(
    zygote: Zygote,
    entry: str,
    workdir: Path,
    cache: Path | None,
    limits: sandbox.Limits,
    cgroup: sandbox.Cgroup,
    errors: IO[bytes],
) -> tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]:
    """A new sandbox around a placeholder with ``entry`` (``module:function``) forked into it from ``zygote``.

    Returns bwrap's process (terminate it to end the sandbox and everything in it), and the
    entry's standard input and output. ``errors`` is its standard error.
    """
    info_read, info_write = os.pipe()
    argv = sandbox.command([PLACEHOLDER, "infinity"], workdir, cache=cache, info_fd=info_write)
    try:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=sandbox.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            preexec_fn=sandbox.limiter(limits, cgroup),
            start_new_session=True,
            pass_fds=(info_write,),
        )
    finally:
        os.close(info_write)
    job_read, job_write = os.pipe()
    lines_read, lines_write = os.pipe()
    try:
        leaf = leaf_of(info_read, process)
        zygote.place(
            leaf,
            entry,
            (job_read, lines_write, errors.fileno()),
            env=sandbox.environment(),
            cwd=sandbox.INSIDE,
            rlimits=sandbox.rlimits(limits),
            cgroup=cgroup.path,
        )
    except BaseException:
        _terminate(process, cgroup)
        for fd in (job_write, lines_read):
            os.close(fd)
        raise
    finally:
        os.close(job_read)
        os.close(lines_write)
    return process, os.fdopen(job_write, "wb"), os.fdopen(lines_read, "rb")


def run(
    plan: Plan,
    workdir: Path,
    log: Path,
    *,
    timeout: float,
    sandboxed: bool,
    limits: sandbox.Limits,
    cache: Path | None,
    database: str,
    zygote: Zygote | None = None,
) -> Outcome:
    """Execute ``plan`` in ``workdir``; return the cells' statuses, the exported answers and the
    registry snapshots (``database`` is the workspace's mlflow.db, relative to ``workdir``).

    With a ``zygote`` (sandboxed only), the runner and its kernels are forked from it into the
    sandbox instead of starting as new interpreters there.
    """
    job = {"timeout": timeout, "database": database, "cells": [step.job() for step in plan.steps]}
    budget = STARTUP + timeout * (len(plan.steps) + sum(1 for step in plan.steps if step.answers) + 1)
    outcome = Outcome()
    cgroup = sandbox.Cgroup(limits)
    with log.open("wb") as errors:
        warm = None
        if zygote is not None and sandboxed:
            try:
                warm = placed(zygote, "scripts.grading.runner:warm_main", workdir, cache, limits, cgroup, errors)
            except (ZygoteError, OSError) as exc:  # a fresh runner in a fresh sandbox instead: slower, same result
                errors.write(f"note: no warm runner ({exc}); starting a fresh one\n".encode())
                errors.flush()
                cgroup.kill_all()
                cgroup = sandbox.Cgroup(limits)
        if warm is not None:
            process, stdin, stdout = warm
        else:
            argv, cwd, env = _argv([sys.executable, "-m", "scripts.grading.runner"], workdir, sandboxed, cache)
            process = _popen(argv, cwd, env, limits, cgroup, errors)
            assert process.stdin is not None and process.stdout is not None
            stdin, stdout = process.stdin, process.stdout
        reader = threading.Thread(target=_read, args=(stdout, outcome), daemon=True)
        reader.start()
        try:
            stdin.write(json.dumps(job).encode())
            stdin.close()
        except BrokenPipeError:
            pass
        reader.join(budget)
        if reader.is_alive():
            outcome.events.append("timeout@deadline")
        _terminate(process, cgroup)
        reader.join(5)
        stdout.close()
    return _finish(outcome, log)


def _finish(outcome: Outcome, log: Path) -> Outcome:
    with log.open("rb") as errors:
        outcome.stderr = errors.read(8192).decode("utf-8", "replace")
    return outcome


def _read(stdout: IO[bytes], outcome: Outcome) -> None:
    """Parse the runner's lines (each capped); stop at ``done``, at EOF or after MAX_LINES."""
    for _ in range(MAX_LINES):
        raw = stdout.readline(MAX_LINE)
        if not raw:
            return
        if not raw.endswith(b"\n"):  # an over-long line: skip the rest of it
            while raw and not raw.endswith(b"\n"):
                raw = stdout.readline(MAX_LINE)
            outcome.events.append("oversized_output")
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(line, dict):
            continue
        if line.get("done"):
            outcome.finished = True
            return
        cell = str(line.get("cell", ""))
        outcome.cells[cell] = {
            "status": str(line.get("status")),
            "error": str(line.get("error"))[:5000] if line.get("error") else None,
        }
        if line.get("suppressed") is True:
            outcome.events.append("suppressed_error")
        if line.get("status") in ("timeout", "died"):
            outcome.events.append(f"{'timeout' if line['status'] == 'timeout' else 'kernel_died'}@{cell}")
        answers = line.get("answers")
        if isinstance(answers, dict):
            outcome.answers.update(answers)
        if isinstance(line.get("snapshot"), str):
            try:
                outcome.snapshots[cell] = base64.b64decode(line["snapshot"], validate=True)
            except (binascii.Error, ValueError):
                pass


def probe(
    snapshots: dict[str, bytes], folder: Path, *, sandboxed: bool, limits: sandbox.Limits
) -> dict[str, dict[str, Any]]:
    """Registry facts per cell, read from the snapshots in a fresh process after the kernel has gone.

    The grader itself writes the snapshots into ``folder`` (outside every sandbox); the probe
    reads them there read-only, sandboxed too, since their content is the student's.
    """
    if not snapshots:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for index, (cell, data) in enumerate(sorted(snapshots.items())):
        (folder / f"{index:03d}.db").write_bytes(data)
        names[f"{index:03d}"] = cell
    inner = [sys.executable, "-m", "scripts.grading.probe", sandbox.INSIDE if sandboxed else str(folder)]
    argv, cwd, env = _argv(inner, folder, sandboxed, None, writable=False)
    cgroup = sandbox.Cgroup(limits)
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
            preexec_fn=sandbox.limiter(limits, cgroup),
        )
    except subprocess.TimeoutExpired:
        return {}
    finally:
        cgroup.kill_all()
    if done.returncode != 0 or len(done.stdout) > MAX_FACTS:
        return {}
    try:
        facts = json.loads(done.stdout)
    except ValueError:
        return {}
    if not isinstance(facts, dict):
        return {}
    return {names[stem]: value for stem, value in facts.items() if stem in names and isinstance(value, dict)}


def prepare_cache(folder: Path) -> Path | None:
    """A migrated empty MLflow database, made by the grader in a fresh process, for every sandbox.

    The fresh process imports MLflow and runs every schema migration (about 9 s on a 2-core
    machine), so it runs once per grader process: the result is kept in a private temporary
    folder (never mounted into a sandbox, removed at exit) and copied for every later call.
    """
    with _preparing:
        return _prepare_cache(folder)


def _prepare_cache(folder: Path) -> Path | None:
    global _prepared
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder / "mlops-labs"
    if _prepared is not None and _prepared.is_dir():
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(_prepared, cache)
        return cache
    scratch = folder / "scratch"
    code = (
        "import sys; from scripts.mlops.workspace import open_workspace; open_workspace('template', root=sys.argv[1])"
    )
    env = sandbox.environment({"HOME": str(folder), "XDG_CACHE_HOME": str(folder), "TMPDIR": str(folder)})
    done = subprocess.run(
        [sys.executable, "-c", code, str(scratch)], env=env, capture_output=True, timeout=300, check=False
    )
    shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode != 0 or not cache.is_dir():
        return None
    private = Path(tempfile.mkdtemp(prefix="mlops-grading-cache-"))
    atexit.register(shutil.rmtree, private, True)
    shutil.copytree(cache, private / "mlops-labs")
    _prepared = private / "mlops-labs"
    return cache
