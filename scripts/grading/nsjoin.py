"""Move the calling process into a running bubblewrap sandbox, with a sandboxed process's rights.

:func:`enter` makes a freshly forked, single-threaded process join the namespaces of ``leaf``,
the first process bubblewrap started in a sandbox, and :func:`drop_privileges` then leaves it
exactly as bubblewrap leaves that process: the sandbox's user (uid 65534 inside), no
capabilities in any set (bounding set included), ``no_new_privs``. It sees the sandbox's
files, process tree, network, IPC and host name, and nothing else; it can create no user
namespace (bubblewrap's ``--disable-userns`` belongs to the namespace it joined).

Linux only. bubblewrap (``--unshare-user --disable-userns``) makes two user namespaces: an
outer one that owns the sandbox's other namespaces, and an inner one, its child, in which the
sandboxed command runs. The process joins the outer one first (it owns the mount namespace, so
only there may the process enter it), then the other namespaces, then the inner one. The PID
namespace applies to children: the caller must fork once more after :func:`enter`.
"""

from __future__ import annotations

import ctypes
import fcntl
import os

_NS_GET_PARENT = 0xB702  # ioctl(2) on a namespace file: the parent user namespace
_FLAGS = {
    "user": 0x10000000,
    "mnt": 0x00020000,
    "pid": 0x20000000,
    "net": 0x40000000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "cgroup": 0x02000000,
}
_ORDER = ("mnt", "pid", "net", "ipc", "uts", "cgroup")
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CAP_VERSION_3 = 0x20080522
SANDBOX_ID = 65534  # bubblewrap's --uid/--gid in scripts.grading.sandbox

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class JoinError(OSError):
    """A namespace could not be joined (the process must not go on)."""


def _setns(fd: int, kind: str) -> None:
    if _libc.setns(fd, _FLAGS[kind]) != 0:
        errno = ctypes.get_errno()
        raise JoinError(errno, f"setns({kind}): {os.strerror(errno)}")


def enter(leaf: int) -> None:
    """Join every namespace of process ``leaf`` that differs from this process's own."""
    inner = os.open(f"/proc/{leaf}/ns/user", os.O_RDONLY)
    try:
        outer = fcntl.ioctl(inner, _NS_GET_PARENT)
    except OSError as exc:
        os.close(inner)
        raise JoinError(exc.errno, f"the sandbox's outer user namespace: {exc.strerror}") from None
    others = []
    for kind in _ORDER:
        if os.readlink(f"/proc/{leaf}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}"):
            others.append((os.open(f"/proc/{leaf}/ns/{kind}", os.O_RDONLY), kind))
    try:
        _setns(outer, "user")
        for fd, kind in others:
            _setns(fd, kind)
        _setns(inner, "user")
    finally:
        for fd in [inner, outer, *(fd for fd, _ in others)]:
            os.close(fd)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_privileges() -> None:
    """Become the sandbox's user with no capability at all and ``no_new_privs`` (as bwrap's child)."""
    for cap in range(64):  # the bounding set first: dropping it needs CAP_SETPCAP
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    try:
        os.setgroups([])
    except OSError:  # setgroups is denied in this user namespace: there are no groups to drop
        pass
    os.setresgid(SANDBOX_ID, SANDBOX_ID, SANDBOX_ID)
    os.setresuid(SANDBOX_ID, SANDBOX_ID, SANDBOX_ID)
    header, data = _CapHeader(_CAP_VERSION_3, 0), (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        errno = ctypes.get_errno()
        raise JoinError(errno, f"capset: {os.strerror(errno)}")
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise JoinError(errno, f"no_new_privs: {os.strerror(errno)}")
    with open("/proc/self/status") as status:  # verify, never assume
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(fields.get(name, "1").strip(), 16) != 0:
            raise JoinError(1, f"{name} is not empty after dropping every capability")
