"""Which process holds a TCP port or a file open: read from ``/proc``, so a fix can stop *that* process.

Stopping a server by name (``pkill -f "mlflow server"``) also stops every other process whose
command line happens to match: a classmate's server, another lab's, a CI runner's. These
helpers find the one process that owns a listening port or holds a database open, by its
process id, so the fix is ``kill PID`` for exactly that process.

:func:`free_port`, :func:`stop_session` and :func:`signal_session` serve the code that starts
servers of its own (a tracking server for a drill or a measurement): a port to bind, and a stop
of exactly the process group that code started.

Linux only (``/proc``); elsewhere they return no owners and callers fall back to saying the
port or file is busy without naming who holds it. Processes of other users are not visible
(their ``/proc/PID/fd`` cannot be read), which is also reported as "owner unknown".
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_PROC = Path("/proc")
_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class ProcessInfo:
    """A process found holding something: its id and command line."""

    pid: int
    cmdline: str

    def __str__(self) -> str:
        program, _, rest = self.cmdline.partition(" ")
        if program.startswith("/"):  # /path/to/.venv/bin/python -> python: the same on every machine
            program = program.rsplit("/", 1)[-1]
        line = f"{program} {rest}".strip()
        shown = line if len(line) <= 120 else line[:117] + "..."
        return f"pid {self.pid} ({shown})"


def cmdline(pid: int) -> str:
    """The command line of ``pid`` as one string ('' when it cannot be read)."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\x00", b" ").decode(errors="replace").strip()


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6, any address)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _pids() -> list[int]:
    try:
        return sorted(int(entry.name) for entry in os.scandir(_PROC) if entry.name.isdigit())
    except OSError:
        return []


def _holders(targets: set[str]) -> list[ProcessInfo]:
    """Processes with an open file descriptor whose link text is one of ``targets``."""
    found: list[ProcessInfo] = []
    if not targets:
        return found
    for pid in _pids():
        fd_dir = _PROC / str(pid) / "fd"
        try:
            links = {os.readlink(entry.path) for entry in os.scandir(fd_dir)}
        except OSError:  # gone, or another user's process
            continue
        if links & targets:
            found.append(ProcessInfo(pid, cmdline(pid)))
    return found


def port_owners(port: int) -> list[ProcessInfo]:
    """The processes holding a socket that listens on TCP ``port`` (empty if none are visible)."""
    return _holders({f"socket:[{inode}]" for inode in _listening_inodes(port)})


def file_holders(path: str | Path) -> list[ProcessInfo]:
    """The processes that hold ``path`` (or its SQLite ``-journal``/``-wal`` files) open."""
    resolved = Path(path).resolve()
    names = {str(resolved), f"{resolved}-journal", f"{resolved}-wal"}
    return [info for info in _holders(names) if info.pid != os.getpid()]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` cannot be bound because something already listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def stop_pid(pid: int, grace: float = 5.0) -> bool:
    """Stop one process by id: SIGTERM, then SIGKILL after ``grace`` seconds. True once it is gone.

    Only for processes this user started; it never matches by name.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        if _gone_within(pid, grace):
            return True
    return not alive(pid)


def _gone_within(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``pid`` to end; polled at 1 ms, then less often (up to every 50 ms)."""
    deadline = time.monotonic() + seconds
    delay = 0.001  # a process that honours SIGTERM is usually gone within a few milliseconds
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting for its parent."""
    try:
        status = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return status.rsplit(")", 1)[-1].split()[0] != "Z"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for commands that only take a number).

    Another process can be given it before the command binds it. Where a server can do without
    one, let it bind its own: the model server gets a socket bound here
    (:func:`scripts.mlops.server.start_server`), ``mlflow server`` binds port 0 and says which
    (:func:`scripts.mlops.contention.listening_port`).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child(Protocol):
    """What :func:`stop_session` needs of a started process: a :class:`subprocess.Popen`, or a
    :class:`scripts.mlops.warm.WarmProcess` (a command forked from the warm interpreter)."""

    @property
    def pid(self) -> int: ...

    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def stop_session(process: Child, grace: float = 5.0) -> int | None:
    """Stop a process started in its own session, and every process in that session (by its id)."""
    code: int | None = None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        signal_session(process, sig)
        try:
            code = process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    signal_session(process, signal.SIGKILL)  # what the leader left behind in its session
    return code if code is not None else process.poll()


def signal_session(process: Child, sig: signal.Signals) -> None:
    """Send ``sig`` to every process in the session ``process`` leads (started with ``start_new_session``)."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
