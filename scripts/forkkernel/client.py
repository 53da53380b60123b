"""The parent's side of the kernel zygote: start one per interpreter and start-up environment, ask it for kernels.

:func:`launch` returns a :class:`ForkedProcess` (the part of :class:`subprocess.Popen` that
jupyter_client's :class:`~jupyter_client.provisioning.LocalProvisioner` uses) or ``None`` when a
forked kernel could differ from a fresh one; the caller then launches a fresh kernel.

One zygote serves every kernel whose command has the same interpreter and flags and whose
environment has the same *start-up variables* (:func:`startup_variables`: those read when the
interpreter starts or when the preloaded libraries are imported). The first kernel with a new
combination starts a zygote for it, with that kernel's environment; it imports in the
background while the request waits in its socket. Zygotes end when this process closes their
control socket (:func:`stop_all`, run at exit) or dies: the kernel ends its control socket's
life, not a signal (``PR_SET_PDEATHSIG`` on the zygote would fire when the *thread* that started
it ends, and jupyter_client starts kernels from worker threads).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Seconds to wait for a zygote's answer (the first one includes its imports, on a busy machine).
REPLY_TIMEOUT = 120.0

#: Variables that act when an interpreter starts or when a preloaded library is imported: a kernel
#: whose environment sets them differently needs a zygote started with its values. (PATH: GitPython
#: looks for `git` on import; debugpy's vendored pydevd reads its PYDEVD_* settings on import.)
_STARTUP_PREFIXES = (
    "PYTHON",
    "OMP_",
    "OPENBLAS_",
    "MKL_",
    "NUMEXPR_",
    "VECLIB_",
    "LC_",
    "LD_",
    "MALLOC_",
    "JE_",
    "MPL",
    "PYDEVD_",
    "DEBUGPY_",
)
_STARTUP_NAMES = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "HOME",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "IPYTHONDIR",
        "JUPYTER_PLATFORM_DIRS",
    }
)
#: What ipykernel puts in MPLBACKEND when it is unset, before any cell can import matplotlib.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
#: Arrow's bundled jemalloc starts a background purging thread when pyarrow is loaded, and a
#: process that forks must be single-threaded. The zygote (not its kernels' environment) turns
#: that thread off unless the kernel's environment configures Arrow's jemalloc itself. Arrow's
#: default memory pool is mimalloc here, so this only changes when an explicitly requested
#: jemalloc pool returns memory to the system, never what a cell computes.
_ZYGOTE_ONLY = {"JE_ARROW_MALLOC_CONF": "background_thread:false"}
#: Interpreter options the zygote can share with its kernels (flags without a separate argument).
_ARGUMENT_OPTIONS = frozenset({"-c", "-m", "-W", "-X", "--check-hash-based-pycs"})


def startup_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` a forked kernel inherits from its zygote instead of reading it itself."""
    found = {k: v for k, v in env.items() if k.startswith(_STARTUP_PREFIXES) or k in _STARTUP_NAMES}
    found.setdefault("MPLBACKEND", INLINE_BACKEND)
    return found


def interpreter_part(cmd: Sequence[str]) -> tuple[str, ...] | None:
    """``(python, flags...)`` if ``cmd`` is ``python [flags] -m ipykernel_launcher ...``, else None."""
    try:
        module_at = list(cmd).index("-m")
    except ValueError:
        return None
    if module_at + 1 >= len(cmd) or cmd[module_at + 1] != "ipykernel_launcher":
        return None
    flags = cmd[1:module_at]
    if any(not flag.startswith("-") or flag in _ARGUMENT_OPTIONS for flag in flags):
        return None
    return tuple(cmd[:module_at])


class ZygoteUnavailable(RuntimeError):
    """The zygote refused a kernel or is gone: launch a fresh kernel instead."""


@dataclass
class Zygote:
    """One running zygote, seen from its parent."""

    process: subprocess.Popen[bytes]
    control: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    launched: set[int] = field(default_factory=set)

    @classmethod
    def start(cls, interpreter: Sequence[str], env: Mapping[str, str], cwd: str) -> Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        zygote_env = {k: v for k, v in env.items() if not k.startswith("JPY_")}
        zygote_env.setdefault("MPLBACKEND", INLINE_BACKEND)  # as ipykernel sets it, before the imports
        for name, value in _ZYGOTE_ONLY.items():
            zygote_env.setdefault(name, value)
        try:
            process = subprocess.Popen(
                [*interpreter, "-m", "scripts.forkkernel.zygote", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=zygote_env,
                cwd=cwd,
                start_new_session=True,  # a Ctrl-C for this process does not reach the zygote
            )
        finally:
            theirs.close()
        return cls(process, ours)

    def alive(self) -> bool:
        return self.process.poll() is None

    def launch(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, stdout: int, stderr: int) -> ForkedProcess:
        """Ask for a kernel running ``argv``; raises :class:`ZygoteUnavailable` if there is none."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            request = json.dumps({"argv": list(argv), "env": dict(env), "cwd": cwd}).encode()
            with self.lock:
                try:
                    socket.send_fds(self.control, [request], [theirs.fileno(), stdout, stderr])
                except OSError as exc:
                    raise ZygoteUnavailable(f"zygote is gone: {exc}") from exc
        finally:
            theirs.close()
        mine.settimeout(REPLY_TIMEOUT)
        try:
            reply = mine.recv(4096)
        except (TimeoutError, OSError) as exc:
            mine.close()
            raise ZygoteUnavailable(f"zygote did not answer: {exc}") from exc
        answer: dict[str, Any] = json.loads(reply) if reply else {"error": "zygote exited"}
        if "pid" not in answer:
            mine.close()
            raise ZygoteUnavailable(str(answer.get("error", answer)))
        mine.settimeout(None)  # blocking again: poll() asks with MSG_DONTWAIT
        self.launched.add(int(answer["pid"]))
        return ForkedProcess(int(answer["pid"]), mine, list(argv))

    def ping(self, timeout: float = REPLY_TIMEOUT) -> None:
        """Return once the zygote has done its imports and serves requests."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with mine:
            try:
                with self.lock:
                    socket.send_fds(self.control, [b'{"ping": true}'], [theirs.fileno()])
            finally:
                theirs.close()
            mine.settimeout(timeout)
            if not mine.recv(4096):
                raise ZygoteUnavailable("zygote exited")

    def stop(self, timeout: float = 5.0) -> None:
        """Close the control socket: the zygote stops its kernels and exits."""
        self.control.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ForkedProcess:
    """A kernel forked by a zygote: ``pid``, ``poll``, ``wait``, ``send_signal``, ``terminate``,
    ``kill`` and ``returncode`` as :class:`subprocess.Popen` has them (it is the zygote's child, so
    its exit status arrives on the status socket). ``stdin``/``stdout``/``stderr`` are None: the
    kernel's streams are the descriptors it was given."""

    stdin = None
    stdout = None
    stderr = None

    def __init__(self, pid: int, status: socket.socket, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self._status = status

    def _take(self, message: bytes) -> None:
        if message:
            self.returncode = int(json.loads(message)["exit"])
        else:  # the zygote died without reporting: its kernels die with it (SIGKILL)
            self.returncode = -signal.SIGKILL
        self._status.close()

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self._take(self._status.recv(4096, socket.MSG_DONTWAIT))
            except BlockingIOError:
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._status.settimeout(timeout)
            try:
                self._take(self._status.recv(4096))
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
            finally:
                if self.returncode is None:
                    self._status.settimeout(None)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_zygotes: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], Zygote] = {}
_registry_lock = threading.Lock()


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """False when ``MLOPS_COLD`` (in this process's or the kernel's environment) asks for fresh kernels."""
    for source in (os.environ, env or {}):
        if source.get("MLOPS_COLD", "") not in ("", "0"):
            return False
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def zygote_for(interpreter: Sequence[str], env: Mapping[str, str], cwd: str | None = None) -> Zygote:
    """The running zygote for this interpreter and start-up environment (started if needed).

    It starts in ``cwd`` (default: this process's), so that it imports the toolkit from where this
    process does; each kernel then moves to its own folder.
    """
    key = (tuple(interpreter), tuple(sorted(startup_variables(env).items())))
    with _registry_lock:
        zygote = _zygotes.get(key)
        if zygote is None or not zygote.alive():
            zygote = Zygote.start(interpreter, env, cwd or os.getcwd())
            _zygotes[key] = zygote
        return zygote


def warm_up(
    interpreter: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *, wait: bool = False
) -> None:
    """Start the zygote the next kernel launched with ``env`` will use, now (it imports in the
    background; ``wait=True`` returns only when it is ready)."""
    env = dict(os.environ if env is None else env)
    if enabled(env):
        zygote = zygote_for(interpreter or (sys.executable,), env)
        if wait:
            zygote.ping()


def launch(
    cmd: Sequence[str], *, env: Mapping[str, str], cwd: str, stdout: int | None = None, stderr: int | None = None
) -> ForkedProcess | None:
    """A kernel running ``cmd`` forked from a zygote, or None if it must be launched fresh."""
    interpreter = interpreter_part(cmd)
    if interpreter is None or not enabled(env):
        return None
    zygote = zygote_for(interpreter, env)
    try:
        return zygote.launch(cmd, env, cwd, 1 if stdout is None else stdout, 2 if stderr is None else stderr)
    except ZygoteUnavailable as exc:
        print(f"forkkernel: launching a fresh kernel ({exc})", file=sys.stderr)
        return None


@atexit.register
def stop_all() -> None:
    """Stop every zygote this process started (and so their kernels)."""
    with _registry_lock:
        zygotes = list(_zygotes.values())
        _zygotes.clear()
    for zygote in zygotes:
        zygote.stop()
