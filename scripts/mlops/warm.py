"""Run ``python -m scripts.mlops ...`` commands in processes forked from a warm interpreter.

A workflow step is a fresh ``python -m scripts.mlops`` process. Most of such a process's life is
spent importing: MLflow, scikit-learn, skops and pandas take several seconds before the command
does anything, and Lab 04 runs the deploy gate's six steps four times. This module keeps one
interpreter that has already imported them (a :mod:`multiprocessing` *fork server*, started once
per parent process and stopped when the parent exits) and forks a child from it per command.

The child is a new process, as a fresh interpreter would be, and gets what a fresh one gets:
the step's exact environment (``os.environ`` replaced, not merged), working directory,
``sys.argv`` and ``sys.path[0]``; its standard output and error go to a pipe the caller reads, as
with :class:`subprocess.Popen`; standard input is ``/dev/null``; the random generators are
reseeded from the operating system and the temporary-directory cache is reset; ``atexit``
handlers run at its end. It exits with the command's exit status. What it does *not* get
fresh: modules already imported by the fork server keep the state they had after import (no
module of this project reads the environment at import time, which is what makes this safe),
and ``PYTHON*`` variables that only act at interpreter start (``PYTHONHASHSEED``,
``PYTHONWARNINGS``...) keep the fork server's values.

``MLOPS_COLD=1`` (or ``warm=False`` in :mod:`scripts.mlops.ci_local`) runs every step in a
fresh interpreter instead, as GitHub does; the tests run the deploy gate both ways and compare.
"""

from __future__ import annotations

import atexit
import io
import multiprocessing
import os
import random
import runpy
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext

#: What the fork server imports before it forks anything: the project's commands and the
#: libraries they load lazily (importing these in a fresh interpreter is the cost saved).
PRELOAD = "scripts.mlops._preload"

_context: ForkServerContext | None = None
_started_with: dict[str, str] = {}

#: Interpreter-start variables that a forked child cannot honour (``PYTHONUNBUFFERED`` it can).
_STARTUP = ("PYTHON", "OMP_", "OPENBLAS_", "MKL_")
_HONOURED = {"PYTHONUNBUFFERED"}


def _startup_variables(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(_STARTUP) and k not in _HONOURED}


def enabled() -> bool:
    """False when ``MLOPS_COLD`` asks for a fresh interpreter per command (or fork is unavailable)."""
    return os.environ.get("MLOPS_COLD", "") in ("", "0") and "forkserver" in multiprocessing.get_all_start_methods()


def context() -> ForkServerContext:
    """The fork-server context, configured to preload :data:`PRELOAD` (started on first use)."""
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        assert isinstance(ctx, ForkServerContext)
        ctx.set_forkserver_preload([PRELOAD])
        _started_with.update(_startup_variables(os.environ))
        _context = ctx
    return _context


def fits(env: Mapping[str, str]) -> bool:
    """True if a child of the warm interpreter can run a command with ``env``.

    Variables read only when an interpreter starts (``PYTHONPATH``, ``PYTHONHASHSEED``, thread
    counts of the numeric libraries...) must equal the ones the warm interpreter started with;
    a step that sets them differently needs a fresh interpreter.
    """
    context()
    return _startup_variables(env) == _started_with


def warm_up() -> None:
    """Start the fork server now, in the background, so it has imported everything by first use.

    It returns at once: the imports happen in the server process while the caller goes on.
    """
    if enabled():
        from multiprocessing import forkserver

        context()
        forkserver.ensure_running()


def _child(argv: list[str], env: dict[str, str], cwd: str, out: Connection) -> None:
    """Body of the forked child: become ``python -m <argv[0]> <argv[1:]>`` and exit with its status."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    out.close()
    for stream in (sys.stdout, sys.stderr):  # PYTHONUNBUFFERED for what the command prints
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[0] = cwd  # `python -m` puts the working directory first
    tempfile.tempdir = None  # re-read TMPDIR from the step's environment
    random.seed()
    try:
        import numpy

        numpy.random.seed()
    except ImportError:  # pragma: no cover - numpy is a requirement
        pass
    module, args = argv[0], argv[1:]
    sys.argv = [module, *args]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # as the interpreter would: print the traceback, exit 1
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_module(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    on_output: Callable[[bytes], None],
) -> int:
    """Run ``python -m argv[0] argv[1:]`` in a child forked from the warm interpreter.

    ``on_output`` gets what the child prints (standard output and error, interleaved as
    written) as it arrives; the return value is the child's exit status (a signal ``N`` gives
    ``128 + N``, as a shell reports it).
    """
    ctx = context()
    reader, writer = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(list(argv), dict(env), cwd, writer), daemon=False)
    try:
        process.start()
        writer.close()
        fd = reader.fileno()
        while chunk := os.read(fd, 65536):
            on_output(chunk)
        process.join()
    except BaseException:
        if process.is_alive():
            process.kill()
            process.join()
        raise
    finally:
        writer.close()
        reader.close()
    code = process.exitcode
    assert code is not None
    return 128 - code if code < 0 else code
