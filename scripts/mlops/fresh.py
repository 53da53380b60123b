"""Turn a child forked from a warm interpreter into what a fresh ``python -m MODULE`` would be, and end it so.

Several parts of this project fork a process that has already imported MLflow, scikit-learn and
the toolkit, instead of starting a new interpreter that imports them again:

* :mod:`scripts.mlops.warm` runs workflow steps (``python -m scripts.mlops ...``);
* :mod:`scripts.forkkernel.zygote` starts notebook kernels for nbval and the benchmarks;
* :mod:`scripts.grading.zygote` places each submission's runner inside its sandbox, and
  :mod:`scripts.grading.forked` forks that runner's kernels.

Each child must then look like a fresh interpreter to the code it runs. :func:`become` does the
part they share, in one place: the exact environment (replaced, not merged), the working folder,
``sys.path[0]`` and ``sys.argv`` as ``python -m`` sets them, the temporary-folder cache reset
(``TMPDIR`` is read again), and the random generators of :mod:`random` and numpy reseeded from
the operating system (a fork copies their state, so two children would otherwise draw the same
numbers), and the inherited heap frozen out of the garbage collector's reach (see :func:`become`).
:func:`run_main` runs the child's entry point and turns its end into an exit status the way the
interpreter does, and :func:`finish` does what interpreter shutdown does before the process ends
(non-daemon threads joined, ``atexit`` handlers run, streams flushed).

What a fork cannot make fresh stays with each caller: which descriptors the child keeps, and
module state that preloaded libraries computed from the environment at import (pandas' display
width in a kernel, ipykernel's parent pid, MLflow's telemetry client).
"""

from __future__ import annotations

import atexit
import gc
import os
import random
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn


def become(env: Mapping[str, str], cwd: str, argv: Sequence[str], orig_argv: Sequence[str] | None = None) -> None:
    """Give this (forked) process the state a fresh ``python -m argv[0] argv[1:]`` starts with.

    ``env`` replaces ``os.environ`` entirely; ``cwd`` becomes the working folder and, as
    ``python -m`` does, the first entry of ``sys.path``; ``argv`` becomes ``sys.argv`` (the module
    name first) and ``orig_argv``, when given, ``sys.orig_argv`` (the whole command line).

    Every object inherited from the warm parent is moved to the garbage collector's permanent
    generation (:func:`gc.freeze`, a constant-time list splice), as Python's documentation
    advises for a child forked without exec. A full collection in the child otherwise walks the
    whole preloaded heap of MLflow and scikit-learn, writing to every object's header and so
    copying every page of it: IPython's ``gc.collect()`` at kernel exit took 0.5 s, against
    0.1 s in a fresh kernel, and the collections during a lab's training were as slow. Only
    the child's own objects are collected; the inherited ones are the parent's imports, which a
    fresh interpreter would hold for its whole life too.
    """
    gc.freeze()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[0] = os.getcwd()
    sys.argv = list(argv)
    if orig_argv is not None:
        sys.orig_argv = list(orig_argv)
    tempfile.tempdir = None  # read TMPDIR again, from the new environment
    random.seed()
    numpy = sys.modules.get("numpy")  # not imported yet: it will seed itself when it is
    if numpy is not None:
        numpy.random.seed()


def exit_status(exc: SystemExit) -> int:
    """The status the interpreter exits with for ``raise SystemExit(code)`` (a message is printed, status 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def run_main(main: Callable[[], object]) -> int:
    """Run ``main()`` as a program's main module runs: its exit status, a traceback on stderr if it fails.

    An integer that ``main`` returns is its status (as a console-script entry point's is).
    """
    try:
        result = main()
    except SystemExit as exc:
        return exit_status(exc)
    except BaseException:  # noqa: BLE001 - as the interpreter would: sys.excepthook, then status 1
        try:
            sys.excepthook(*sys.exc_info())
        except BaseException:  # noqa: BLE001 - the interpreter says so and goes on to shut down
            # Nothing that could fail again: the code that broke the hook may have broken the
            # builtins that printing a traceback needs (a hostile notebook does exactly that).
            os.write(2, b"Error in sys.excepthook\n")
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def shut_down() -> None:
    """What the interpreter does at exit before it finalises: join non-daemon threads, run ``atexit``, flush."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's own exit step
    except BaseException:  # noqa: BLE001 - a thread's failure has already been printed
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more can be said
            pass


def finish(code: int) -> NoReturn:
    """End this forked process with ``code`` after :func:`shut_down`, without tearing the copied interpreter down."""
    try:
        shut_down()
    finally:
        os._exit(code)
