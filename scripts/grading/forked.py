"""Kernels forked from a warm runner, inside its sandbox (a kernel provisioner for jupyter_client).

The runner placed by :mod:`scripts.grading.zygote` has MLflow, scikit-learn, ipykernel and the
course's toolkit imported. Before it starts any thread, it forks a **kernel template**
(:meth:`KernelTemplate.fork`): a single-threaded copy of itself that forks one kernel process per
request. :class:`ForkedProvisioner` hands those kernels to ``jupyter_client``'s
``KernelManager``, so the runner drives them (execute, interrupt, restart, shut down) exactly as
it drives a kernel started with ``python -m ipykernel_launcher``.

A kernel gets what a fresh one gets: the environment, working folder and command line the
kernel manager asked for (``sys.path[0]`` is the working folder, as with ``python -m``), its own
session and process group (interrupts are ``SIGINT`` to the group), reseeded random generators,
a reset temporary-folder cache, and what the template's imports decided from its own environment
decided again: the same set-up as nbval's forked kernels (:mod:`scripts.forkkernel.zygote`).
Its standard streams are the ones the manager asked for (the kernel's output travels over its
ZeroMQ channels). The template and every kernel stay inside the runner's sandbox: they are its
descendants.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

_MAX_MESSAGE = 1 << 20


class KernelTemplate:
    """A forked, single-threaded copy of the calling process that forks kernels on request."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self.channel = channel

    @classmethod
    def fork(cls) -> KernelTemplate:
        """Fork the template now (the caller must not have started a thread yet)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            try:
                _template(theirs)
            finally:
                os._exit(0)
        theirs.close()
        return cls(pid, ours)

    def start(self, argv: list[str], env: dict[str, str], cwd: str, streams: tuple[int, int]) -> tuple[int, int]:
        """Start a kernel for the command line ``argv`` (``... -f CONNECTION_FILE``): its pid and a pidfd.

        ``streams``: the descriptors that become the kernel's standard output and error.
        """
        socket.send_fds(self.channel, [json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()], list(streams))
        message, fds, _, _ = socket.recv_fds(self.channel, _MAX_MESSAGE, 1)
        reply = json.loads(message or b"{}")
        if not fds:
            raise RuntimeError(f"the kernel template could not start a kernel: {reply.get('error', 'it has exited')}")
        return int(reply["pid"]), fds[0]


def _reap(*_: Any) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _template(channel: socket.socket) -> None:
    """Body of the template: serve kernel requests until the runner closes the channel."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # never hold the runner's result stream
        os.dup2(null, fd)
    os.close(null)
    keep = channel.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        try:
            message, streams, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 2)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # no reaping before the pidfd exists
        try:
            child = os.fork()
            if child == 0:
                channel.close()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                for target, fd in zip((1, 2), streams, strict=False):
                    os.dup2(fd, target)
                for fd in streams:
                    os.close(fd)
                _kernel(request)
            pidfd = os.pidfd_open(child)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            for fd in streams:
                os.close(fd)
        try:
            socket.send_fds(channel, [json.dumps({"pid": child}).encode()], [pidfd])
        finally:
            os.close(pidfd)


def _kernel(request: dict[str, Any]) -> None:
    """Become the kernel ``python -m ipykernel_launcher ARGS`` would start. Never returns.

    The same kernel set-up as the notebook kernels nbval runs (:func:`scripts.forkkernel.zygote.become_kernel`):
    what the template's imports decided from its own environment (pandas' display width,
    ipykernel's parent pid, MLflow's telemetry) is decided again from the kernel's.
    """
    from scripts.forkkernel.zygote import become_kernel

    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        code = become_kernel(list(request["argv"]), dict(request["env"]), str(request["cwd"]), 1, 2)
    finally:
        os._exit(code)


class _Forked:
    """A kernel forked by the template: the part of ``subprocess.Popen`` the provisioner uses."""

    stdin = stdout = stderr = None

    def __init__(self, pidfd: int, pid: int) -> None:
        self.pidfd = pidfd
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self.pidfd], [], [], 0)[0]:
            self.returncode = 1  # the exit status goes to the template (the parent); here only "it ended"
            os.close(self.pidfd)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            select.select([self.pidfd], [], [], timeout)
        code = self.poll()
        if code is None:
            raise TimeoutError(f"kernel {self.pid} still runs")
        return code

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                signal.pidfd_send_signal(self.pidfd, signum)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkedProvisioner(LocalProvisioner):
    """``LocalProvisioner`` whose kernels come from a :class:`KernelTemplate` instead of a new interpreter."""

    template: KernelTemplate | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        assert self.template is not None, "set the provisioner's template before starting a kernel"
        if not _is_ipykernel(cmd):  # a kernel the template cannot become: start it as jupyter_client would
            return await super().launch_kernel(cmd, **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        streams = tuple(_fd(kwargs.get(name), default) for name, default in (("stdout", 1), ("stderr", 2)))
        pid, pidfd = self.template.start(list(cmd), env, cwd, streams)  # type: ignore[arg-type]
        self.process = _Forked(pidfd, pid)  # type: ignore[assignment]  # the part of Popen it uses
        self.pid = pid
        self.pgid = pid  # the kernel called setsid(): it leads its own group
        self.cwd = cwd
        return self.connection_info


def _is_ipykernel(cmd: list[str]) -> bool:
    """Whether ``cmd`` is ``python [flags] -m ipykernel_launcher ...`` (the kernel the template forks)."""
    return "-m" in cmd and cmd[cmd.index("-m") + 1 : cmd.index("-m") + 2] == ["ipykernel_launcher"]


def _fd(stream: Any, default: int) -> int:
    """The descriptor of a Popen-style stream argument (None: this process's own, as Popen inherits)."""
    if stream is None:
        return default
    return stream if isinstance(stream, int) else stream.fileno()
