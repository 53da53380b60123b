"""A bubblewrap sandbox per submission: what a kernel may see, touch and use.

Each sandboxed command sees

* the virtual environment, its base Python and the repository's ``scripts/`` **read-only**, at
  their own absolute paths (so ``import scripts.mlops`` resolves through the venv's ``.pth``),
  with ``scripts/grading/manifests`` hidden;
* the committed files the labs read (``eval_baseline.json``, Lab 04's workflow) read-only;
* its own fresh workspace read-write at ``/lab`` (its current folder) and a private ``/tmp``
  (1 GiB); everything else is read-only;
* nothing else of the repository, the other submissions, the grader's output folder, the
  instructor's home or cache;
* its own PID namespace (no ``/proc`` of the grader), a network namespace with only its own
  loopback (servers on 127.0.0.1 work), a new session (no terminal injection), no capabilities,
  ``--die-with-parent``;
* resource limits (:class:`Limits`) on memory, CPU time, file size and processes.

When the sandbox's first process ends or is killed, the kernel tears its PID namespace down:
every process started inside is gone. ``Limits.processes`` is enforced with ``RLIMIT_NPROC``,
which Linux does not apply to root; when the grader runs as root and a writable ``pids``
cgroup exists, each sandbox also gets a cgroup with ``pids.max``.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .assign import MANIFESTS, REPO

INSIDE = "/lab"  # where the submission's workspace appears inside the sandbox
CACHE_INSIDE = "/tmp/cache"
PIDS_CGROUP = Path("/sys/fs/cgroup/pids")
TMP_BYTES = 1024**3  # the private /tmp lives in memory: cap it
LAB_INPUTS = ("eval_baseline.json", ".github/workflows/deploy-gate.yml")  # repository files the labs read (read-only)


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


@dataclass(frozen=True)
class Limits:
    """Per-sandbox resource limits (every process inside inherits them)."""

    memory_bytes: int = 6 * 1024**3  # address space per process (RLIMIT_AS)
    cpu_seconds: int = 900  # CPU time per process
    file_bytes: int = 512 * 1024**2  # largest file a process may write
    processes: int = 256  # processes (and threads) of the sandbox


def bwrap() -> str:
    """The bubblewrap binary, or :class:`SandboxUnavailable` naming the package to install."""
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable(
            "bubblewrap (the `bwrap` command) is not installed; install the Debian/Ubuntu package "
            "`bubblewrap` (sudo apt-get install bubblewrap) or run `make venv` as root, "
            "or pass --no-sandbox to grade without isolation (every row is then flagged `unsandboxed`)"
        )
    return found


def _read_only_roots() -> list[Path]:
    """The interpreter and libraries a kernel needs, besides /usr: venv, base Python, scripts/."""
    roots = [Path(sys.prefix), Path(sys.base_prefix), Path(sysconfig.get_paths()["purelib"])]
    unique: list[Path] = []
    for root in roots:
        root = root.resolve()
        if not any(root == seen or root.is_relative_to(seen) for seen in unique) and not str(root).startswith("/usr/"):
            unique.append(root)
    return unique


def command(
    argv: Sequence[str],
    workspace: Path,
    *,
    writable: bool = True,
    network: bool = False,
    cache: Path | None = None,
    info_fd: int | None = None,
) -> list[str]:
    """The bwrap command line that runs ``argv`` with ``workspace`` at /lab (read-write unless told).

    ``info_fd``: bwrap writes ``{"child-pid": N, ...}`` there once the sandbox is set up (used to
    place a warm runner in it, :mod:`scripts.grading.zygote`).
    """
    args = [
        bwrap(),
        "--die-with-parent",
        "--new-session",
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    if not network:
        args.append("--unshare-net")  # only its own loopback
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            args += ["--ro-bind", str(target), str(target)]
    for name in ("passwd", "group", "hosts", "nsswitch.conf", "localtime", "ssl", "ca-certificates", "mime.types"):
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    for root in _read_only_roots():
        args += ["--ro-bind", str(root), str(root)]
    scripts = REPO / "scripts"
    args += ["--ro-bind", str(scripts), str(scripts), "--tmpfs", str(MANIFESTS)]
    for name in LAB_INPUTS:  # course data the labs read (not grading material)
        if (REPO / name).is_file():
            args += ["--ro-bind", str(REPO / name), str(REPO / name)]
    if cache is not None:
        args += ["--ro-bind", str(cache), f"{CACHE_INSIDE}/mlops-labs"]
    args += [
        "--bind" if writable else "--ro-bind",
        str(workspace.resolve()),
        INSIDE,
        "--remount-ro",
        "/",
        "--chdir",
        INSIDE,
        "--",
    ]
    return args + list(argv)


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a sandboxed (or unsandboxed) kernel sees: nothing of the grader's own variables."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": "/tmp/home",
        "TMPDIR": "/tmp",
        "XDG_CACHE_HOME": CACHE_INSIDE,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # machine-specific BLAS fixes, not secrets
        if key in os.environ:
            env[key] = os.environ[key]
    return {**env, **(extra or {})}


class Cgroup:
    """A ``pids`` cgroup (v1) for one sandbox when the grader may create one (root); else inert."""

    def __init__(self, limits: Limits) -> None:
        self.path: Path | None = None
        if os.geteuid() != 0 or not os.access(PIDS_CGROUP, os.W_OK):
            return
        path = PIDS_CGROUP / f"lab-grading-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(limits.processes))
            self.path = path
        except OSError:
            self.path = None

    def join(self) -> None:
        """Move the calling process (a child about to exec) into the cgroup."""
        if self.path is not None:
            self.join_path(self.path)

    @staticmethod
    def join_path(path: Path) -> None:
        """Move the calling process into the cgroup at ``path`` (a process that got only the path: the zygote's child)."""
        (path / "cgroup.procs").write_text(str(os.getpid()))

    def kill_all(self) -> None:
        """SIGKILL whatever is left in the cgroup, then remove it (once its tasks are reaped)."""
        if self.path is None:
            return
        for _ in range(200):
            try:
                pids = [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                return
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except OSError:  # tasks still exiting
                time.sleep(0.05)


def rlimits(limits: Limits) -> dict[str, int]:
    """The ``resource.RLIMIT_*`` values (soft = hard) that enforce ``limits`` for this grader's user."""
    # RLIMIT_NPROC counts every task of the user, so a non-root grader keeps its own ones free.
    nproc = limits.processes + (0 if os.geteuid() == 0 else _tasks_of(os.getuid()))
    return {
        "RLIMIT_AS": limits.memory_bytes,
        "RLIMIT_CPU": limits.cpu_seconds,
        "RLIMIT_FSIZE": limits.file_bytes,
        "RLIMIT_NPROC": nproc,
        "RLIMIT_CORE": 0,
    }


def limiter(limits: Limits, cgroup: Cgroup | None = None):
    """A ``preexec_fn`` that applies ``limits`` (and joins ``cgroup``) in the child before exec."""
    values = rlimits(limits)

    def apply() -> None:
        if cgroup is not None:
            cgroup.join()
        for name, value in values.items():
            resource.setrlimit(getattr(resource, name), (value, value))

    return apply


def _tasks_of(uid: int) -> int:
    """How many tasks (processes and threads) ``uid`` runs now."""
    count = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if proc.stat().st_uid == uid:
                count += sum(1 for _ in (proc / "task").iterdir())
        except OSError:
            continue
    return count


def check_works() -> None:
    """Fail with :class:`SandboxUnavailable` unless a trivial sandbox starts here."""
    scratch = Path(os.environ.get("TMPDIR", "/tmp"))
    done = subprocess.run(command(["/bin/true"], scratch, writable=False), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap cannot create a sandbox here ({done.stderr.strip()[:300]}); it needs user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1) or root; or pass --no-sandbox (rows are flagged `unsandboxed`)"
        )
