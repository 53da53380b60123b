"""Run ``python -m scripts.mlops ...`` commands in processes forked from a warm interpreter.

A workflow step is a fresh ``python -m scripts.mlops`` process. Most of such a process's life is
spent importing: MLflow, scikit-learn, skops and pandas take several seconds before the command
does anything, and Lab 04 runs the deploy gate's six steps four times. This module keeps one
interpreter that has already imported them (a :mod:`multiprocessing` *fork server*, started once
per parent process and stopped when the parent exits) and forks a child from it per command. A
notebook kernel forked from :mod:`scripts.forkkernel`'s zygote has imported them too: it forks
its fork server from itself as it starts (:func:`fork_server_from_here`), so its first command
does not wait for a fresh interpreter's imports.

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

import inspect
import io
import multiprocessing
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_ready
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from . import fresh

#: What the fork server imports before it forks anything: the project's commands and the
#: libraries they load lazily (importing these in a fresh interpreter is the cost saved).
PRELOAD = "scripts.mlops._preload"

_context: ForkServerContext | None = None
_started_with: dict[str, str] = {}

#: Held while this process starts a child (or the fork server) and while it reads a child's exit
#: status: multiprocessing does neither safely from several threads. The fork server writes a
#: child's status once into a pipe, and every ``Process.start`` first reads the status of each
#: earlier child that has ended (``multiprocessing.process._cleanup``). A thread waiting for its
#: own child could read that pipe at the same moment and find it empty and closed, which
#: multiprocessing reports as exit status 255: two workflow runs side by side got 255 from a step
#: that had succeeded. Starting also swaps a function of ``multiprocessing.util`` in and out
#: (:func:`_helpers_in_own_process_group`), which two threads must not do at once either. A start
#: holds it for milliseconds, except one that starts the fork server (the first, or the next after
#: it died): that start waits until the server has done its imports, seconds, and so does another
#: thread's poll meanwhile.
_lock = threading.Lock()

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
        with _lock, _starting():
            forkserver.ensure_running()


def running() -> bool:
    """True when this process's fork server has been started (by :func:`warm_up`, by
    :func:`fork_server_from_here` or by an earlier command), so a command forks from it at once.

    Callers that only save time by forking use this to decide: starting a fork server just for
    one short command costs more than the fresh interpreter it replaces (the preload imports).
    """
    from multiprocessing import forkserver

    state: Any = forkserver._forkserver
    return enabled() and _context is not None and state._forkserver_pid is not None


def fork_server_from_here() -> bool:
    """Start this process's fork server now, as a fork of this process rather than a fresh interpreter.

    For a process that has already imported what :data:`PRELOAD` names and is still
    single-threaded: a notebook kernel forked from :mod:`scripts.forkkernel`'s zygote, before
    ipykernel starts its threads. Started on first use, the fork server would be a fresh
    interpreter that spends seconds importing MLflow and scikit-learn again (Lab 04's first
    deploy gate waited about 2 s for it, and every Lab 01 model server as long). A fork has them
    already, for the cost of one ``fork()``.

    The server is entered in multiprocessing's own state as if multiprocessing had started it:
    multiprocessing connects to it, checks that it still runs (it is a child of this process)
    and starts another if it has died; it ends when this process's end closes its pipe. Like a
    server started on first use, it is in a process group of its own (see
    :func:`_helpers_in_own_process_group`). Returns False, and does nothing, when warm commands
    are turned off (``MLOPS_COLD``) or this Python's fork server speaks a protocol not known here.
    """
    from multiprocessing import connection, forkserver, util

    if not enabled() or "authkey_r" in inspect.signature(forkserver.main).parameters:
        return False
    context()
    state: Any = forkserver._forkserver  # its private state, as ForkServer.ensure_running sets it
    if state._forkserver_pid is not None:
        return False
    with socket.socket(socket.AF_UNIX) as listener:
        address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the fork server: serve until every holder of alive_w has gone
            code = 1
            try:
                os.setpgid(0, 0)
                os.close(alive_w)
                forkserver.main(listener.fileno(), alive_r, [])
            except SystemExit:
                code = 0
            except BaseException:  # noqa: BLE001 - reported, then this process ends
                sys.excepthook(*sys.exc_info())
                sys.stderr.flush()
            finally:
                os._exit(code)
        os.close(alive_r)
    try:
        os.setpgid(pid, pid)  # either side may do it first
    except OSError:  # pragma: no cover - the child already did
        pass
    state._forkserver_address = address
    state._forkserver_alive_fd = alive_w
    state._forkserver_pid = pid
    return True


@contextmanager
def _starting() -> Iterator[None]:
    """What starting a child of the fork server (or the server itself) needs: both of the below."""
    with _main_hidden(), _helpers_in_own_process_group():
        yield


#: The fork server and resource tracker started by this process (kept so they are never reaped
#: behind multiprocessing's back: it waits for the fork server itself).
_helpers: list[subprocess.Popen[bytes]] = []


def _spawn_in_own_process_group(path: str | bytes, args: Sequence[object], passfds: Sequence[int]) -> int:
    """:func:`multiprocessing.util.spawnv_passfds`, with the new process in a process group of its own."""
    argv = [word if isinstance(word, str | bytes) else str(word) for word in args]
    helper = subprocess.Popen(argv, executable=path, pass_fds=tuple(passfds), process_group=0)
    _helpers.append(helper)
    return helper.pid


@contextmanager
def _helpers_in_own_process_group() -> Iterator[None]:
    """Start multiprocessing's helper processes (fork server, resource tracker) outside the caller's
    process group.

    A Jupyter kernel shares its process group with what it starts, and the group is what
    signals reach: an interrupt (SIGINT to the group) would stop the fork server in the middle of
    its imports, and on shutdown ipykernel signals every process of its group and then waits until
    none is left. The resource tracker ignores SIGTERM and the fork server, once ended, stays a
    zombie nobody reaps, so that wait lasted until the kernel's manager gave up and killed the
    kernel, 2.5 s later, in every lab that ran a workflow step. In a group of their own they
    still end with the caller: the fork server when its pipe from the caller closes, the tracker
    when the last writer of its pipe has gone, and the commands they run with the fork server.
    """
    from multiprocessing import util

    spawn = util.spawnv_passfds
    util.spawnv_passfds = _spawn_in_own_process_group
    try:
        yield
    finally:
        util.spawnv_passfds = spawn


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Hide the caller's ``__main__`` from multiprocessing while it starts a child.

    multiprocessing re-runs the parent's main script in every child it starts this way (which
    is why its documentation asks for ``if __name__ == "__main__":``). A child here runs a
    project command, never the caller's script, so it is given an empty main module instead.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _die_with_parent() -> None:
    """On Linux: SIGTERM this process when its parent (the fork server) exits.

    The fork server exits as soon as the process that started it does, so a child never
    outlives the notebook kernel or test run it belongs to.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            pass


def _let_go_of_the_fork_server() -> None:
    """Close this child's copy of the descriptor that keeps the fork server alive.

    multiprocessing gives each child of its fork server the parent's end of the pipe whose
    closing tells the fork server to exit (so that the child could start processes of its
    own). A long-lived child, such as a model server, would then keep the fork server, and so
    itself, alive after the notebook or test that started it has died.
    """
    from multiprocessing import forkserver

    state = getattr(forkserver, "_forkserver", None)
    fd = getattr(state, "_forkserver_alive_fd", None)
    if state is not None and isinstance(fd, int):
        try:
            os.close(fd)
        except OSError:  # pragma: no cover - already closed
            pass
        state._forkserver_alive_fd = None


def _target_fd(target: Connection | str) -> int:
    if isinstance(target, str):
        return os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return target.fileno()


def _child(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    output: Connection | str,
    errors: Connection | str | None,
    sock: socket.socket | None,
    new_session: bool = False,
) -> None:
    """Body of the forked child: become ``python -m <argv[0]> <argv[1:]>`` and exit with its status."""
    if new_session:  # as Popen(start_new_session=True): its own session and process group
        os.setsid()
    _let_go_of_the_fork_server()
    _die_with_parent()
    sys.stdout.flush()
    sys.stderr.flush()
    out_fd = _target_fd(output)
    err_fd = out_fd if errors is None else _target_fd(errors)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    for target, fd in ((output, out_fd), (errors, err_fd)):
        if isinstance(target, Connection):
            target.close()
        elif isinstance(target, str):
            os.close(fd)
    for stream in (sys.stdout, sys.stderr):  # PYTHONUNBUFFERED for what the command prints
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    if sock is not None:  # the command adopts the descriptor: this object must never close it
        fd = sock.detach()
        argv = [word.replace("{fd}", str(fd)) for word in argv]
    module, args = argv[0], argv[1:]
    fresh.become(env, cwd, [module, *args])
    fresh.finish(fresh.run_main(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)))


@dataclass
class WarmProcess:
    """A command running in a child of the warm interpreter: the part of :class:`subprocess.Popen`
    that callers use (``pid``, ``poll``, ``wait``, ``send_signal``, ``terminate``, ``kill``,
    ``returncode``: negative ``-N`` when signal ``N`` ended it, as with Popen)."""

    process: BaseProcess
    args: list[str]
    returncode: int | None = None

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def poll(self) -> int | None:
        if self.returncode is None:
            with _lock:  # one reader of the status at a time (see _lock); the read itself never blocks
                if not self.process.is_alive():
                    self.returncode = self.process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            wait_ready([self.process.sentinel], timeout)  # without _lock: other threads start and read meanwhile
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    output: Connection | str,
    errors: Connection | str | None = None,
    sock: socket.socket | None = None,
    new_session: bool = False,
) -> WarmProcess:
    """Start ``python -m argv[0] argv[1:]`` in a child forked from the warm interpreter.

    ``output`` and ``errors`` take standard output and error: the writing end of a pipe, or a
    file path (appended to); ``errors=None`` sends both to ``output``. ``sock``, a listening
    socket, is handed over to the child, and ``{fd}`` in ``argv`` becomes its descriptor there.
    With ``new_session`` the child leads a session (and process group) of its own, as with
    ``Popen(start_new_session=True)``, so :func:`scripts.mlops.procs.stop_session` stops it and
    every process it starts. The child is stopped (SIGTERM) if this process exits while it still runs.
    """
    ctx = context()
    process = ctx.Process(
        target=_child, args=(list(argv), dict(env), cwd, output, errors, sock, new_session), daemon=True
    )
    with _lock, _starting():
        process.start()
    return WarmProcess(process, list(argv))


def run_module(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    on_output: Callable[[bytes], None],
    timeout: float | None = None,
) -> int:
    """Run ``python -m argv[0] argv[1:]`` in a child forked from the warm interpreter, to its end.

    ``on_output`` gets what the child prints (standard output and error, interleaved as
    written) as it arrives; the return value is the child's exit status (a signal ``N`` gives
    ``128 + N``, as a shell reports it). With ``timeout`` (seconds), a child still running then
    is killed and :class:`subprocess.TimeoutExpired` raised; what it printed until then has
    reached ``on_output``.
    """
    reader, writer = context().Pipe(duplex=False)
    child: WarmProcess | None = None
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        child = start(argv, env=env, cwd=cwd, output=writer)
        writer.close()
        fd = reader.fileno()
        while True:
            if deadline is not None and not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise subprocess.TimeoutExpired(list(argv), timeout or 0.0)
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            on_output(chunk)
        code = child.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except BaseException:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        raise
    finally:
        writer.close()
        reader.close()
    return 128 - code if code < 0 else code
