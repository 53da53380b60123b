"""The Jupyter kernel provisioner that forks kernels from a zygote (``forked-kernel``).

:class:`ForkingProvisioner` is jupyter_client's :class:`LocalProvisioner` with another way to
start the process, and with the kernel's sockets in a private folder instead of on loopback
ports (:mod:`scripts.forkkernel.transport`): everything else (connection file, signals to the
process group, interrupt, shutdown, restart, cleanup) is the stock code, acting on a
:class:`ForkedProcess` instead of a :class:`subprocess.Popen`. When a forked kernel could
differ from a fresh one (see :func:`scripts.forkkernel.client.launch`), it launches a fresh
kernel exactly as the stock provisioner does.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from . import client, transport

#: Keyword arguments of jupyter_client's ``launch_kernel`` a forked kernel can honour.
_FORKABLE = frozenset({"env", "cwd", "stdin", "stdout", "stderr", "independent", "extra_arguments", "kernel_id"})


def _stream_fd(value: Any) -> int | None:
    """The descriptor behind a ``stdout=``/``stderr=`` argument; None to inherit; -1 if impossible."""
    if value is None:
        return None
    if value == subprocess.DEVNULL:
        return os.open(os.devnull, os.O_WRONLY)
    if isinstance(value, int):
        return value if value >= 0 else -1  # PIPE and STDOUT need a Popen
    fileno = getattr(value, "fileno", None)
    return fileno() if callable(fileno) else -1


class ForkingProvisioner(LocalProvisioner):
    """Launch ``ipykernel_launcher`` kernels as children of a warm zygote (fresh ones otherwise)."""

    #: True when the running kernel was forked (False: launched fresh, as a fallback).
    forked: bool = False

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        # Unix sockets in a private folder, not loopback ports another process could take
        # before the kernel binds them (:mod:`scripts.forkkernel.transport`); kept on restart.
        if self.parent is not None:
            transport.use_private_ipc(self.parent)
        return await super().pre_launch(**kwargs)

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if not restart and self.parent is not None:
            transport.remove_private_ipc(self.parent)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        process = await asyncio.to_thread(self._fork, cmd, kwargs)
        if process is None:
            self.forked = False
            return await super().launch_kernel(cmd, **kwargs)
        self.forked = True
        self.process = process  # type: ignore[assignment]
        self.pid = process.pid
        self.pgid = process.pid  # the kernel called setsid() before the zygote reported its pid
        self.cwd = kwargs.get("cwd") or pathlib.Path.cwd()
        return self.connection_info

    def _fork(self, cmd: list[str], kwargs: dict[str, Any]) -> client.ForkedProcess | None:
        if set(kwargs) - _FORKABLE or kwargs.get("independent") or kwargs.get("stdin") is not None:
            return None
        opened: list[int] = []
        streams: list[int | None] = []
        for name in ("stdout", "stderr"):
            fd = _stream_fd(kwargs.get(name))
            if fd == -1:
                return None
            if fd is not None and kwargs.get(name) == subprocess.DEVNULL:
                opened.append(fd)
            streams.append(fd)
        # As jupyter_client.launcher.launch_kernel does for a kernel that is not independent.
        env = dict(kwargs.get("env") or os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())
        cwd = os.fspath(kwargs.get("cwd") or os.getcwd())
        try:
            argv = [os.path.expanduser(word) for word in cmd]
            return client.launch(argv, env=env, cwd=cwd, stdout=streams[0], stderr=streams[1])
        finally:
            for fd in opened:
                os.close(fd)
