"""Warm sandboxes: a submission's runner and kernel start from a process that has already imported the labs' libraries.

A fresh kernel spends seconds importing MLflow, scikit-learn and the course's toolkit before a
student's first cell runs, and a batch pays that once per submission. The grader instead starts
one **zygote** per batch (``python -m scripts.grading.zygote``, a plain child of the grader with
the sandbox's environment and none of the grader's own variables), which imports them once and
then, for each submission, forks a process that:

1. joins the cgroup and takes the resource limits of that submission's sandbox;
2. enters the submission's bubblewrap sandbox (:func:`scripts.grading.nsjoin.enter`: its
   files, process tree, network, IPC), which the grader started around a placeholder command;
3. forks once more (to be inside the sandbox's PID namespace), drops every privilege as
   bubblewrap does, takes the submission's descriptors as standard input, output and error,
   closes every other one, and runs the runner there (:func:`scripts.grading.runner.warm_main`).

So each submission still runs in its own sandbox and reaches nothing of another's: the zygote
never runs student code, holds nothing of the grader's (no answer key, no secret, no
descriptor of another submission), and a forked process keeps none of its descriptors. The
sandbox's teardown is unchanged: killing the placeholder's bubblewrap ends its PID namespace,
and every process inside with it.

The protocol (one ``SOCK_SEQPACKET`` socket, whose descriptor is the zygote's argument): the zygote sends
``{"ready": true}`` after its imports; each request is a JSON message with three descriptors
attached (stdin, stdout, stderr of the runner); the reply says whether the process was placed
in the sandbox (``{"ok": true}``) or why not.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..mlops import fresh
from .assign import REPO

#: Imported once by the zygote: what the runner, the kernel and the labs' setup cells load.
PRELOAD = (
    "scripts.mlops._preload",
    "scripts.mlops.plots",
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "scripts.grading.runner",
    "scripts.grading.export",
    "scripts.grading.forked",
    "scripts.forkkernel.zygote",
)
#: What a kernel started by ipykernel gets when MPLBACKEND is unset; fixed before the imports.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
_MAX_MESSAGE = 1 << 20
READY_TIMEOUT = 300.0


class ZygoteError(RuntimeError):
    """The zygote could not start, or could not place a process in a sandbox."""


# --- inside the zygote ---------------------------------------------------------------------------


def _entry(name: str) -> Callable[[], Any]:
    """``module:function``, imported here in the zygote (the grader names it; it is not the student's)."""
    module, _, function = name.partition(":")
    found = getattr(importlib.import_module(module), function, None)
    if not callable(found):
        raise ZygoteError(f"no function {name!r}")
    return found


def _place(request: dict[str, Any], fds: list[int], entry: Callable[[], Any]) -> None:
    """In a child of the zygote: enter the sandbox, fork into its PID namespace, run ``entry``. Never returns."""
    from . import nsjoin, sandbox

    if request.get("cgroup"):  # before entering: the cgroup file system is not visible inside
        sandbox.Cgroup.join_path(Path(request["cgroup"]))
    for name, value in request["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    nsjoin.enter(int(request["leaf"]))
    if os.fork() != 0:
        os._exit(0)  # the grandchild lives on inside the sandbox, adopted by its init
    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    nsjoin.drop_privileges()
    fresh.become(request["env"], request["cwd"], [request["entry"], *request.get("argv", [])])
    fresh.finish(fresh.run_main(entry))


def _serve(channel: socket.socket) -> None:
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 3)
        except (ConnectionError, OSError):
            return
        if not message:
            return  # the grader closed its end: the batch is over
        try:
            request = json.loads(message)
            if len(fds) != 3:
                raise ZygoteError(f"expected 3 descriptors, got {len(fds)}")
            entry = _entry(request["entry"])
            child = os.fork()
            if child == 0:
                channel.close()
                try:
                    _place(request, fds, entry)
                except BaseException:  # noqa: BLE001 - report on the runner's stderr, then die
                    try:
                        os.write(fds[2], traceback.format_exc().encode()[-4000:])
                    finally:
                        os._exit(70)
            _, status = os.waitpid(child, 0)
            code = os.waitstatus_to_exitcode(status)
            reply = {"ok": code == 0, "error": None if code == 0 else f"placing the runner failed (exit {code})"}
        except (ValueError, ZygoteError, OSError, ImportError) as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        channel.send(json.dumps(reply).encode())


def main() -> int:
    """``python -m scripts.grading.zygote``: import :data:`PRELOAD`, then place runners until told to stop."""
    channel = socket.socket(fileno=int(sys.argv[1]))
    os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
    for name in PRELOAD:
        __import__(name)
    if threading.active_count() != 1:  # a forking process must be single-threaded
        channel.send(json.dumps({"ready": False, "error": "threads were started by the imports"}).encode())
        return 1
    channel.send(json.dumps({"ready": True}).encode())
    _serve(channel)
    return 0


# --- in the grader ---------------------------------------------------------------------------------


class Zygote:
    """The grader's handle on one zygote (one per batch); :meth:`place` is safe from several threads."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with log.open("ab") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scripts.grading.zygote", str(theirs.fileno())],
                env={**env, "MPLBACKEND": env.get("MPLBACKEND", INLINE_BACKEND)},
                cwd=str(REPO),  # `python -m` puts it first on sys.path: the grader's modules, never a submission's
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        theirs.close()
        self.channel = ours
        self.log = log
        self._lock = threading.Lock()
        self._ready: bool | None = None

    def _wait_ready(self) -> None:
        if self._ready is None:
            self.channel.settimeout(READY_TIMEOUT)
            try:
                message = json.loads(self.channel.recv(_MAX_MESSAGE) or b"{}")
            except (TimeoutError, OSError, ValueError):
                message = {}
            self._ready = bool(message.get("ready"))
            self.channel.settimeout(None)
        if not self._ready:
            raise ZygoteError(f"the grading zygote did not start; its log ({self.log}) ends with: {_tail(self.log)}")

    def place(
        self,
        leaf: int,
        entry: str,
        fds: tuple[int, int, int],
        *,
        env: Mapping[str, str],
        cwd: str,
        rlimits: Mapping[str, int],
        cgroup: Path | None,
    ) -> None:
        """Run ``entry`` (``module:function``) inside the sandbox whose first process is ``leaf``."""
        request = {
            "leaf": leaf,
            "entry": entry,
            "env": dict(env),
            "cwd": cwd,
            "rlimits": dict(rlimits),
            "cgroup": str(cgroup) if cgroup is not None else None,
        }
        with self._lock:
            self._wait_ready()
            socket.send_fds(self.channel, [json.dumps(request).encode()], list(fds))
            reply = json.loads(self.channel.recv(_MAX_MESSAGE) or b"{}")
        if not reply.get("ok"):
            raise ZygoteError(reply.get("error") or "the zygote closed its channel")

    def close(self) -> None:
        """Stop the zygote (it exits when its channel closes; killed if it does not)."""
        self.channel.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_shared: Zygote | None = None
_shared_lock = threading.Lock()


def shared() -> Zygote:
    """This process's zygote, started on first use and reused by every later batch (stopped at exit).

    Reuse is as safe as within one batch: the zygote never runs a submission's code and keeps
    nothing of one; each request gets a fresh fork of the same imported libraries. Its home and
    temporary folder are a private folder, outside every sandbox, removed at exit.
    """
    global _shared
    with _shared_lock:
        if _shared is None or _shared.process.poll() is not None:
            from . import sandbox

            home = Path(tempfile.mkdtemp(prefix="grading-zygote-"))
            env = sandbox.environment({"HOME": str(home), "TMPDIR": str(home), "XDG_CACHE_HOME": str(home)})
            _shared = Zygote(env, home / "zygote.log")
            atexit.register(_stop_shared, _shared, home)
        return _shared


def _stop_shared(zygote: Zygote, home: Path) -> None:
    zygote.close()
    shutil.rmtree(home, ignore_errors=True)


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_bytes()[-size:].decode("utf-8", "replace") or "(empty)"
    except OSError:
        return "(no log)"


def leaf_of(info: int, bwrap: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """The pid of the command bubblewrap runs in a sandbox, once it runs (``--info-fd`` is ``info``)."""
    raw = b""
    deadline = time.monotonic() + timeout
    init = None
    with os.fdopen(info, "rb", buffering=0) as stream:
        while init is None and len(raw) < 4096:
            chunk = stream.read(4096)
            if not chunk:
                break
            raw += chunk
            try:
                init = int(json.loads(raw)["child-pid"])
            except (ValueError, KeyError, TypeError):
                continue  # not the whole document yet
    if init is None:
        raise ZygoteError(f"bubblewrap did not report its sandbox (exit {bwrap.poll()}): {raw[:200]!r}")
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
            if children and os.readlink(f"/proc/{children[0]}/exe") != os.readlink(f"/proc/{init}/exe"):
                return int(children[0])  # it has exec'd the placeholder: its namespaces are final
        except OSError:
            pass
        if bwrap.poll() is not None:
            break
        time.sleep(0.005)
    raise ZygoteError(f"the sandbox's placeholder did not start (bubblewrap exit {bwrap.poll()})")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main())
