"""Kernels that listen on Unix sockets in a private folder instead of loopback TCP ports.

jupyter_client gives a TCP kernel its five ports by binding port 0 and closing the socket at
once; the kernel binds them later, after its start-up (half a second forked, a second or two
fresh). Any process on the machine that binds or connects meanwhile can be given one of those
ports, and the kernel then dies with ``ZMQError: Address already in use`` before its first cell
(``make test`` met it once in 88 runs: its servers and HTTP clients use ports all the time).

An IPC kernel's sockets are files, ``<folder>/k-1`` ... ``<folder>/k-5``, in a folder made for
that kernel and readable by this user only: no other process can take them, and no other user
can connect to them either (a TCP kernel's ports are open to every local user; only its
message signatures protect it). The kernel, its messages and its outputs are otherwise the
same: jupyter_client and ipykernel support both transports.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

#: Start of the name of every folder made here.
PREFIX = "kernel-ipc-"
#: A Unix socket's path holds at most 107 bytes on Linux; the longest here is ``<folder>/k-NNNNN``.
_MAX_PATH = 100
_PORTS = ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")
#: The folders this process made and has not removed yet (cleaning up removes nothing else).
_made: set[Path] = set()


def use_private_ipc(manager: Any) -> Path | None:
    """Switch ``manager`` (a jupyter_client ``KernelManager`` whose kernel has not started) to IPC.

    Its sockets go in a new folder (mode 0700) under the temporary directory; returns that
    folder. Leaves the manager as it is (TCP on ports jupyter_client picks), and returns None,
    when it was told a transport or ports of its own (a TCP kernel on chosen ports, or IPC
    already), or when no folder can be made there or its path is too long for a socket's.
    """
    if manager.transport != "tcp" or any(getattr(manager, name) for name in _PORTS):
        return None
    try:
        folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    except OSError:
        return None
    if len(str(folder / "k-65535")) > _MAX_PATH:
        folder.rmdir()
        return None
    manager.transport = "ipc"
    manager.ip = str(folder / "k")
    manager.cache_ports = False  # TCP ports only: jupyter_client's port cache binds them
    _made.add(folder)
    return folder


def remove_private_ipc(manager: Any) -> None:
    """Remove the folder :func:`use_private_ipc` made for ``manager``'s sockets (its files first).

    Does nothing for any other manager (one given its own IPC folder keeps it). Call it once the
    kernel is shut down for good (not between a kernel and its restart, which binds the same
    sockets again).
    """
    if manager.transport != "ipc" or not manager.ip:
        return
    folder = Path(manager.ip).parent
    if folder in _made:
        _made.discard(folder)
        shutil.rmtree(folder, ignore_errors=True)


def folder_of(connection_file: str) -> Path | None:
    """The private folder of the kernel whose connection file this is; None for any other kernel.

    For a process that did not make the folder but outlives the manager that did: the zygote,
    whose kernels it stops when its parent died without shutting them down.
    """
    try:
        info = json.loads(Path(connection_file).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("transport") != "ipc":
        return None
    sockets = Path(str(info.get("ip", "")))
    folder = sockets.parent
    if sockets.name == "k" and folder.name.startswith(PREFIX) and folder.parent == Path(tempfile.gettempdir()):
        return folder
    return None
