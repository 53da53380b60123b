"""The kernel zygote: a warm interpreter that forks notebook kernels on request.

Started by :mod:`scripts.forkkernel.client` as ``python [flags] -m scripts.forkkernel.zygote FD``
with the environment of the kernels it will serve. ``FD`` is its end of a ``SOCK_SEQPACKET``
unix socket pair, the *control socket*; the parent keeps the other end. The zygote imports
:mod:`scripts.forkkernel._preload`, then serves requests until the control socket reaches end
of file (its parent closed it or died); it then stops its kernels (SIGTERM to each process
group, SIGKILL after a grace period) and exits.

Protocol (one datagram each, JSON, UTF-8):

* parent → zygote on the control socket: ``{"argv": [...], "env": {...}, "cwd": "..."}`` with
  three descriptors attached (:func:`socket.send_fds`): the zygote's end of a new per-kernel
  ``SOCK_SEQPACKET`` pair (the *status socket*), and the kernel's standard output and error;
* zygote → parent on the status socket: ``{"pid": N}`` once the kernel is in its own session,
  or ``{"error": "why"}`` if it could not fork (the parent then launches a fresh kernel); later
  ``{"exit": code}`` when the kernel has ended (``-N`` for signal ``N``, as :class:`subprocess.Popen`
  reports it), after which the zygote closes the status socket.

This process is independent of :mod:`multiprocessing`'s fork server (which
:mod:`scripts.mlops.warm` uses): it never starts it, and a kernel that starts it gets its own.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib
import io
import itertools
import json
import os
import runpy
import select
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..mlops import fresh, warm
from . import transport

#: What the zygote imports before it forks anything.
PRELOAD = "scripts.forkkernel._preload"
#: Seconds a kernel gets to exit after SIGTERM when the zygote stops.
GRACE = 2.0

_PR_SET_PDEATHSIG = 1
#: How many default thread names ("Thread-N") the preloaded imports used up: debugpy's vendored
#: pydevd creates a Thread object on import (to inspect it), which a fresh kernel imports while
#: its app initialises. Set by :func:`main`; 0 in any other process.
_thread_names_used_by_preload = 0
_MAX_REQUEST = 1 << 20


def _set_parent_death_signal(signum: int) -> None:
    """Have the kernel (Linux) receive ``signum`` when the zygote, its parent, exits."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum))
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            pass


def fork_blockers() -> str | None:
    """Why this process must not fork now (another thread is running), or None.

    Python threads are counted by :mod:`threading`; native threads (BLAS pools, a library's
    helper thread) only by the kernel, in ``/proc/self/task``. A fork copies only the calling
    thread: a lock another thread holds would stay locked forever in the child.
    """
    if threading.active_count() != 1:
        return f"{threading.active_count()} Python threads are running"
    try:
        tasks = len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - no procfs: Python threads were checked
        return None
    if tasks != 1:
        return f"{tasks} native threads are running"
    return None


def _open_fds() -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - no procfs
        return list(range(os.sysconf("SC_OPEN_MAX")))


def _close_fds_from(first: int) -> None:
    """Close every descriptor from ``first`` on (the listing's own descriptor is gone by then)."""
    for fd in _open_fds():
        if fd >= first:
            try:
                os.close(fd)
            except OSError:
                pass


def _fresh_stream(stream: Any) -> None:
    """Line-buffer a standard stream exactly when a fresh interpreter would (it is a terminal)."""
    if isinstance(stream, io.TextIOWrapper):
        try:
            stream.reconfigure(line_buffering=os.isatty(stream.fileno()))
        except (OSError, ValueError):  # pragma: no cover - stream without descriptor
            pass


def settle_after_kernel_init(app: Any) -> None:
    """Redo, once the kernel app is initialised, what preloaded libraries decided at import.

    pandas chooses ``display.max_columns`` and ``display.encoding`` when it is imported: 0 (fit the terminal) unless it
    runs inside an IPython kernel, 20 there (``pandas/core/config_init.py``, ``is_terminal``).
    The zygote imported it outside any kernel; a fresh kernel imports it in a cell, where
    ``get_ipython`` is a builtin. The rule is evaluated again here in that same situation, and
    both the option and its registered default (what ``reset_option`` restores) follow it.
    """
    _use_thread_names(_thread_names_used_by_preload)
    pandas_config = sys.modules.get("pandas.core.config_init")
    shell = getattr(app, "shell", None)
    if pandas_config is None or shell is None:
        return
    from pandas._config import config as cf

    with shell.builtin_trap:
        terminal = pandas_config.is_terminal()
    max_cols = 0 if terminal else 20
    key = "display.max_columns"
    _reset_pandas_default(cf, key, max_cols)
    # display.encoding: pandas asks sys.stdout (now the kernel's stream) when it is imported.
    from pandas._config.display import detect_console_encoding

    _reset_pandas_default(cf, "display.encoding", detect_console_encoding())


def _import_keeping_thread_names(module: str) -> int:
    """Import ``module``; return how many default thread names that used up, and put threading's
    name counter back where it was (a fresh interpreter's next thread is still ``Thread-1``)."""
    counter = getattr(threading, "_counter", None)
    if counter is None:  # pragma: no cover - another CPython's threading
        importlib.import_module(module)
        return 0
    first = counter()
    importlib.import_module(module)
    used = threading._counter() - first - 1  # type: ignore[attr-defined]
    threading._counter = itertools.count(first).__next__  # type: ignore[attr-defined]
    return used


def _use_thread_names(count: int) -> None:
    """Use up ``count`` default thread names, as the imports a fresh kernel does at this point would."""
    counter = getattr(threading, "_counter", None)
    if counter is not None:
        for _ in range(count):
            counter()


def _reset_pandas_default(cf: Any, key: str, value: object) -> None:
    registered = cf._registered_options[key]
    if cf.get_option(key) == registered.defval:
        cf.set_option(key, value)
    cf._registered_options[key] = registered._replace(defval=value)


def reread_environment() -> None:
    """Redo the environment reads preloaded modules did at import, now that the kernel's is in place.

    MLflow sets up its telemetry client on import (``mlflow/__init__.py``): on or off according
    to ``MLFLOW_DISABLE_TELEMETRY``/``DO_NOT_TRACK``, with a new session id in the environment.
    The kernel does it again with its own environment (and so gets its own session id).
    """
    telemetry = sys.modules.get("mlflow.telemetry.client")
    if telemetry is not None:
        telemetry.set_telemetry_client()


def settle_before_kernel_init(app: Any) -> None:
    """ipykernel reads ``JPY_PARENT_PID`` (the manager's pid: the kernel then watches for its parent's
    death and keeps the ``ipython kernel`` banner quiet) and ``JPY_INTERRUPT_EVENT`` into its app's
    trait defaults when ``ipykernel.kernelapp`` is imported, which the zygote did with its own
    environment. They are set from the kernel's before the app reads its command line and config
    (which still override them, as they override the defaults)."""
    app.parent_handle = int(os.environ.get("JPY_PARENT_PID") or 0)
    app.interrupt = int(os.environ.get("JPY_INTERRUPT_EVENT") or 0)


def _hook_kernel_app(before: Callable[[Any], None], after: Callable[[Any], None]) -> None:
    """Run ``before(app)`` and ``after(app)`` around ``IPKernelApp.initialize`` (in this child only)."""
    from ipykernel.kernelapp import IPKernelApp

    original = IPKernelApp.initialize

    def initialize(self: Any, argv: Any = None) -> None:
        before(self)
        original(self, argv)
        after(self)

    IPKernelApp.initialize = initialize  # type: ignore[method-assign]


def become_kernel(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    stdout_fd: int,
    stderr_fd: int,
    set_by_imports: dict[str, str] | None = None,
) -> int:
    """In a freshly forked child whose other descriptors are closed: run ``python -m argv[2] argv[3:]``.

    ``argv`` is the kernel command (``[python, flags..., "-m", "ipykernel_launcher", "-f", file]``).
    ``set_by_imports``: variables the preloaded modules put in the zygote's environment when
    imported (scikit-learn's ``KMP_*``); the kernel would have set them the same way, on import.
    Returns the exit status the interpreter would have had.
    """
    # Standard input as jupyter_client's launcher leaves it: a pipe whose writing end is closed.
    stdin_r, stdin_w = os.pipe()
    os.close(stdin_w)
    os.dup2(stdin_r, 0)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    for fd in {stdin_r, stdout_fd, stderr_fd} - {0, 1, 2}:
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        _fresh_stream(stream)
    module_at = argv.index("-m")
    fresh.become(env, cwd, [argv[module_at + 1], *argv[module_at + 2 :]], orig_argv=argv)
    for name, value in (set_by_imports or {}).items():
        os.environ.setdefault(name, value)
    reread_environment()
    warm.fork_server_from_here()  # while this process is still single-threaded
    _hook_kernel_app(before=settle_before_kernel_init, after=settle_after_kernel_init)
    code = fresh.run_main(lambda: runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True))
    let_control_finish()
    fresh.shut_down()
    return code


def let_control_finish(timeout: float = GRACE) -> None:
    """After a ``shutdown_request``: wait until ipykernel's control thread has finished with it.

    The control thread handles the request, stops the main loop and then still publishes an
    "idle" status through the IOPub thread, while the main thread is already exiting. If
    ``IPKernelApp.close`` (an ``atexit`` handler) stops the IOPub thread first, that publication
    waits forever and the kernel hangs until its manager kills it, seconds later (an upstream
    race: ipython/ipykernel#1518, posit-dev/positron#7142). A fresh interpreter rarely loses it
    because its exit is slower; a forked kernel, whose exit skips walking the frozen heap (see
    :func:`scripts.mlops.fresh.become`), lost it in about one shutdown in five. Waiting here for
    the control thread, which ends once its loop has stopped, puts the two in the order
    ipykernel intends. Kernels that end otherwise (``exit()`` in a cell, a crash) do not wait.
    """
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    if kernelapp is None or not kernelapp.IPKernelApp.initialized():
        return
    app = kernelapp.IPKernelApp.instance()
    kernel, control = getattr(app, "kernel", None), getattr(app, "control_thread", None)
    if getattr(kernel, "_shutdown_message", None) is not None and control is not None and control.is_alive():
        control.join(timeout)


class Zygote:
    """The serving loop: one control socket, kernels by pid with their status sockets."""

    def __init__(self, control: socket.socket, set_by_imports: dict[str, str] | None = None) -> None:
        self.control = control
        self.set_by_imports = dict(set_by_imports or {})
        self.kernels: dict[int, socket.socket] = {}
        #: Each running kernel's private socket folder (scripts.forkkernel.transport), if it has one.
        self.sockets: dict[int, Path] = {}
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        try:
            while True:
                ready, _, _ = select.select([self.control.fileno(), self.wake_r], [], [])
                if self.wake_r in ready:
                    self._drain_wakeups()
                    self._reap()
                if self.control.fileno() in ready:
                    try:
                        message, fds, _, _ = socket.recv_fds(self.control, _MAX_REQUEST, 3)
                    except ConnectionResetError:
                        return
                    if not message:
                        return  # the parent closed its end or died
                    self._launch(message, fds)
        finally:
            self._stop_kernels()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while self.kernels:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            sock = self.kernels.pop(pid, None)
            self.sockets.pop(pid, None)
            if sock is not None:
                _send(sock, {"exit": os.waitstatus_to_exitcode(status)})
                sock.close()

    def _stop_kernels(self) -> None:
        """Stop the kernels still running when the parent left, and remove their socket folders
        (their managers, which would have, are gone)."""
        folders = [self.sockets[pid] for pid in self.kernels if pid in self.sockets]
        for pid in list(self.kernels):
            try:
                os.killpg(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + GRACE
        while self.kernels and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.kernels):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        while self.kernels:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self._reap()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    def _launch(self, message: bytes, fds: list[int]) -> None:
        if len(fds) == 1 and message == b'{"ping": true}':  # the imports are done: say so
            with socket.socket(fileno=fds[0]) as sock:
                _send(sock, {"ready": os.getpid()})
            return
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return
        status = socket.socket(fileno=fds[0])
        stdout_fd, stderr_fd = fds[1], fds[2]
        try:
            request = json.loads(message)
            argv, env, cwd = list(request["argv"]), dict(request["env"]), str(request["cwd"])
        except (ValueError, KeyError, TypeError) as exc:
            self._refuse(status, stdout_fd, stderr_fd, f"bad request: {exc}")
            return
        problem = fork_blockers()
        if problem is not None:
            self._refuse(status, stdout_fd, stderr_fd, f"zygote is not single-threaded: {problem}")
            return
        in_session_r, in_session_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the kernel
            code = 1
            try:
                os.setsid()
                _set_parent_death_signal(signal.SIGKILL)
                if os.getppid() != zygote_pid:  # the zygote died between fork and prctl
                    os._exit(1)
                os.close(in_session_w)  # the zygote may now report the pid: killpg reaches this process
                self._let_go(status, in_session_r)
                stdout_fd, stderr_fd = _keep_above(stdout_fd, stderr_fd, floor=3)
                _close_fds_except({stdout_fd, stderr_fd})
                code = become_kernel(argv, env, cwd, stdout_fd, stderr_fd, self.set_by_imports)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(in_session_w)
        os.read(in_session_r, 1)  # end of file once the child has its own session (or died)
        os.close(in_session_r)
        os.close(stdout_fd)
        os.close(stderr_fd)
        self.kernels[pid] = status
        folder = _socket_folder(argv)
        if folder is not None:
            self.sockets[pid] = folder
        _send(status, {"pid": pid})
        self._reap()  # it may already have ended

    @staticmethod
    def _refuse(status: socket.socket, stdout_fd: int, stderr_fd: int, why: str) -> None:
        _send(status, {"error": why})
        status.close()
        os.close(stdout_fd)
        os.close(stderr_fd)

    def _let_go(self, status: socket.socket, in_session_r: int) -> None:
        """In the child: close the zygote's sockets and pipes through their owners, reset signals."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.control.close()
        status.close()
        for sock in self.kernels.values():
            sock.close()
        self.kernels.clear()
        for fd in (self.wake_r, self.wake_w, in_session_r):
            os.close(fd)


def _socket_folder(argv: list[str]) -> Path | None:
    """The private socket folder named by the connection file in a kernel command (``-f FILE``)."""
    if "-f" not in argv[:-1]:
        return None
    return transport.folder_of(argv[argv.index("-f") + 1])


def _keep_above(*fds: int, floor: int) -> tuple[int, ...]:
    """Copies of ``fds`` numbered ``floor`` or more (so that dup2 onto 0-2 cannot clobber one)."""
    return tuple(fd if fd >= floor else fcntl.fcntl(fd, fcntl.F_DUPFD, floor) for fd in fds)


def _close_fds_except(keep: set[int]) -> None:
    for fd in _open_fds():
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _send(sock: socket.socket, payload: dict[str, Any]) -> None:
    try:
        sock.send(json.dumps(payload).encode())
    except OSError:  # the parent gave up on this kernel or died: nobody is listening
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    control = socket.socket(fileno=int(args[0]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's Ctrl-C is for the parent
    global _thread_names_used_by_preload
    before = dict(os.environ)
    _thread_names_used_by_preload = _import_keeping_thread_names(PRELOAD)
    set_by_imports = {k: v for k, v in os.environ.items() if before.get(k) != v and k != "_MLFLOW_TELEMETRY_SESSION_ID"}
    Zygote(control, set_by_imports).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
