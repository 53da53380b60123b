"""Kernels forked from the zygote (scripts.forkkernel) behave as fresh ones: same state after the
setup imports, same outputs, same crash, interrupt and timeout behaviour; a kernel that could
differ is launched fresh; nothing outlives its parent.

Every comparison runs the stock ``python3`` kernel and the forked one in the same test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from traitlets.config import Config

from scripts.forkkernel import KERNEL_NAME, PROVISIONER_NAME, client, transport
from scripts.forkkernel.provisioner import ForkingProvisioner
from tests.support import kernel_sockets

REPO = Path(__file__).resolve().parents[1]
FRESH = "python3"
KERNELS = (FRESH, KERNEL_NAME)
T = TypeVar("T")
# nbclient gives kernels named python3 an in-memory IPython history; the forked kernel gets it too.
HISTORY = ["--HistoryManager.hist_file=:memory:"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _single_threaded_blas(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `make` exports it: one BLAS/OpenMP thread, so the zygote can fork (both kernels get it)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MLOPS_COLD", raising=False)


def test_the_forked_kernelspec_names_the_provisioner() -> None:
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:  # pragma: no cover - the venv stamp installs it
        pytest.fail(f"kernelspec {KERNEL_NAME} is not installed: python -m scripts.forkkernel install --sys-prefix")
    assert spec.metadata["kernel_provisioner"]["provisioner_name"] == PROVISIONER_NAME
    stock = KernelSpecManager().get_kernel_spec(FRESH)
    assert spec.argv == stock.argv  # the same interpreter and flags as the stock kernel


def _sockets(kernel: str) -> dict[str, str]:
    """The stock kernel listens on Unix sockets too (tests/support.py); a forked one on those its
    provisioner gives it (scripts/forkkernel/transport.py)."""
    return kernel_sockets() if kernel == FRESH else {}


def _config(kernel: str) -> Config:
    """What nbclient passes to the kernel manager it creates: :func:`_sockets`."""
    return Config({"KernelManager": _sockets(kernel)})


def _run(cells: list[str], kernel: str, cwd: Path, **options: object) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    NotebookClient(
        nb, kernel_name=kernel, extra_arguments=HISTORY, resources={"metadata": {"path": str(cwd)}},
        config=_config(kernel), **options,
    ).execute()  # fmt: skip
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[object]:
    """Every output, as JSON; only the kernel's pid (in the name of its cells' files) is masked."""
    return [re.sub(r"ipykernel_\d+", "ipykernel_<PID>", json.dumps(cell.outputs, sort_keys=True)) for cell in nb.cells]


STATE = textwrap.dedent(
    r"""
    import gc, json, logging, os, re, signal, sys, tempfile, threading, warnings
    import matplotlib, numpy as np, pandas as pd
    from ipykernel.kernelapp import IPKernelApp
    from multiprocessing import forkserver
    from pandas._config import config as cf
    def target(fd):
        try:
            return re.sub(r"\d+", "N", os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return "?"
    app = IPKernelApp.instance()
    print(json.dumps({
        "cwd": os.getcwd(), "path": sys.path, "argv": [os.path.basename(a) for a in sys.argv[:1]] + sys.argv[3:],
        "flags": repr(sys.flags), "xoptions": sys._xoptions, "executable": sys.executable,
        "env": {k: v for k, v in os.environ.items() if k not in ("JPY_SESSION_NAME", "_MLFLOW_TELEMETRY_SESSION_ID")},
        "telemetry_session": "_MLFLOW_TELEMETRY_SESSION_ID" in os.environ,
        "threads": sorted(t.name for t in threading.enumerate()),
        "next_thread_name": threading.Thread().name,
        "gc": {"collected": len(gc.get_objects()), "frozen": gc.get_freeze_count()},
        "fds": sorted(target(int(fd)) for fd in os.listdir("/proc/self/fd")),
        "stdin": target(0),
        "signals": {s.name: repr(signal.getsignal(s)) for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)},
        "pandas": {k: repr(cf._get_root(k)[0][cf._get_root(k)[1]]) for k in cf._registered_options},
        "pandas_defaults": {k: repr(o.defval) for k, o in cf._registered_options.items()},
        "rc": {k: repr(v) for k, v in matplotlib.rcParams.items()},
        "warnings": sorted(repr(f) for f in warnings.filters),
        "root_logger": [type(h).__name__ for h in logging.getLogger().handlers],
        "tempdir": tempfile.gettempdir(), "numpy_print": repr(np.get_printoptions()),
        "parent_handle": app.parent_handle == int(os.environ["JPY_PARENT_PID"]),
        "own_session": os.getsid(0) == os.getpid() == os.getpgid(0),
        "umask": os.umask(0o22), "recursion": sys.getrecursionlimit(),
        "fork_server": (lambda pid: pid and [os.getpgid(pid) == pid, target(forkserver._forkserver._forkserver_alive_fd)])(
            forkserver._forkserver._forkserver_pid),
    }))
    """
)
SETUP = "import mlflow\nimport pandas as pd\nfrom scripts.mlops import data, evaluate, plots, registry, train"


def test_a_forked_kernel_is_in_the_state_of_a_fresh_one(tmp_path: Path) -> None:
    """After the labs' setup imports: environment, paths, streams, descriptors, signals, threads,
    pandas options and their defaults (display.max_columns, display.encoding), matplotlib's rc,
    warning filters, the next default thread name... are those of a fresh kernel. Differences that
    are expected: the Python thread list is the same, but Arrow's jemalloc background thread is
    off in the forked one; the heap inherited from the zygote is frozen out of garbage collection;
    the forked kernel's fork server for workflow steps is running already."""
    states = {}
    for kernel in KERNELS:
        nb = _run([SETUP, STATE], kernel, tmp_path)
        stdout = [o for o in nb.cells[1].outputs if o.get("name") == "stdout"]
        states[kernel] = json.loads(stdout[-1]["text"])
    fresh, forked = states[FRESH], states[KERNEL_NAME]
    # The one difference by design: what the forked kernel inherited from the zygote is frozen
    # (fresh.become), so its collections walk only what it made itself. Without that, every full
    # collection (IPython runs one at exit, training triggers them) walks and copies the zygote's
    # whole heap: it made a forked kernel's shutdown 0.5 s, against 0.1 s for a fresh kernel.
    heap, forked_heap = fresh.pop("gc"), forked.pop("gc")
    assert heap["frozen"] == 0, heap
    assert forked_heap["frozen"] > heap["collected"] / 2, (heap, forked_heap)  # the setup's imports, frozen
    assert forked_heap["collected"] < heap["collected"] / 5, (heap, forked_heap)
    # The other: a forked kernel starts with the fork server for warm commands already forked
    # (scripts.mlops.warm.fork_server_from_here), in a process group of its own, and holds its pipe.
    assert fresh.pop("fork_server") is None
    assert forked.pop("fork_server") == [True, "pipe:[N]"]
    forked["fds"].remove("pipe:[N]")
    assert forked["pandas"]["display.max_columns"] == fresh["pandas"]["display.max_columns"] == "20"
    assert forked["own_session"] and forked["parent_handle"] and forked["telemetry_session"] == fresh["telemetry_session"]
    different = {k for k in fresh if fresh[k] != forked[k]}
    assert not different, {k: (fresh[k], forked[k]) for k in different}


OUTPUTS = [
    "import pandas as pd, numpy as np\nfrom scripts.mlops import plots\nimport matplotlib.pyplot as plt",
    "pd.DataFrame(np.arange(60).reshape(2, 30))",
    "print(pd.DataFrame(np.arange(60).reshape(2, 30)))",
    "fig, ax = plt.subplots(figsize=(2, 2)); ax.plot([1, 3, 2]); ax.set_title('t')",
    "import sys, os; print(sys.path[0] == os.getcwd(), os.getcwd()); print('to stderr', file=sys.stderr)",
    "{'b': 1, 'a': [1.5, None]}",
    "import warnings; warnings.warn('careful')",
    "1 / 0",
]


def test_outputs_are_those_of_a_fresh_kernel(tmp_path: Path) -> None:
    """Byte for byte: a wide DataFrame (HTML and text), a figure's PNG, streams, a warning, an error."""
    runs = [_outputs(_run(OUTPUTS, kernel, tmp_path, allow_errors=True)) for kernel in KERNELS]
    assert runs[0] == runs[1]
    assert "image/png" in json.dumps(runs[1][3])  # the figure really was drawn inline


def test_a_forked_kernel_asked_to_shut_down_exits_by_itself_every_time(tmp_path: Path) -> None:
    """A graceful shutdown ends with the kernel's own exit (status 0), never with the manager
    killing a kernel that hung in its exit: ipykernel's control thread must have published its
    last status before the IOPub thread is closed (zygote.let_control_finish). The race was lost
    in about one forked shutdown in five; twelve in a row all exit by themselves."""
    statuses = []
    for _ in range(12):
        km = KernelManager(kernel_name=KERNEL_NAME)
        # SIGTERM after 15 s instead of jupyter_client's 2.5 s: a loaded machine must not be taken
        # for the race (a kernel that lost it never exits by itself, however long it is given).
        km.shutdown_wait_time = 30.0
        km.start_kernel(cwd=str(tmp_path), extra_arguments=HISTORY)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            kc.execute_interactive("x = 1", timeout=30)
            process = km.provisioner.process  # type: ignore[union-attr]
            assert isinstance(km.provisioner, ForkingProvisioner) and km.provisioner.forked
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        statuses.append(process.poll())
    assert statuses == [0] * 12, statuses


def test_a_forked_kernel_listens_on_unix_sockets_in_a_private_folder(tmp_path: Path) -> None:
    """No loopback port another process could take first: the kernel's five sockets are files in
    a folder of its own that only this user can enter, kept for a restart, removed at shutdown."""
    import psutil

    km = KernelManager(kernel_name=KERNEL_NAME)
    km.start_kernel(cwd=str(tmp_path), extra_arguments=HISTORY)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        info = km.get_connection_info()
        folder = Path(str(info["ip"])).parent
        assert info["transport"] == "ipc" and folder.name.startswith(transport.PREFIX), info
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert sorted(path.name for path in folder.iterdir()) == [f"k-{n}" for n in range(1, 6)]
        bound = {c.laddr for c in psutil.Process(km.provisioner.pid).net_connections(kind="unix")}  # type: ignore[union-attr]
        assert {str(path) for path in folder.iterdir()} <= bound  # the kernel itself listens on them
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        assert km.provisioner.forked and folder.is_dir()  # type: ignore[union-attr]
        assert kc.execute_interactive("x = 1", timeout=30)["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert not folder.exists()


def test_a_manager_keeps_tcp_when_told_its_ports_or_when_no_socket_folder_fits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = KernelManager(kernel_name=KERNEL_NAME, shell_port=50_123)
    assert transport.use_private_ipc(chosen) is None and chosen.transport == "tcp"
    own = KernelManager(kernel_name=KERNEL_NAME, transport="ipc", ip=str(tmp_path / "k"))
    assert transport.use_private_ipc(own) is None
    transport.remove_private_ipc(own)  # not a folder made for a kernel: kept
    assert tmp_path.is_dir()
    deep = tmp_path / ("d" * 90)  # a socket's path holds 107 bytes
    deep.mkdir()
    for tempdir in (deep, tmp_path / "missing"):
        monkeypatch.setattr("tempfile.tempdir", str(tempdir))
        default = KernelManager(kernel_name=KERNEL_NAME)
        assert transport.use_private_ipc(default) is None and default.transport == "tcp"
    assert list(deep.iterdir()) == []  # the folder that was too deep is gone again


def _side_by_side(run: Callable[..., T], cases: list[tuple[object, ...]]) -> list[T]:
    """``run(*case)`` for every case, each in a thread of its own; the results in the order of ``cases``.

    For cases that mostly wait (for a dead kernel to be noticed, an interrupt, a timeout): each
    runs in its own kernel and its own folder (a case's last argument, created here), so running
    them side by side changes nothing they check, only the time the test takes. The first case
    to fail fails the test.
    """
    for case in cases:
        assert isinstance(case[-1], Path)
        case[-1].mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = [pool.submit(run, *case) for case in cases]
        return [future.result() for future in futures]


def _crash_and_restart(kernel: str, crash: str, cwd: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell(crash)])
    runner = NotebookClient(nb, kernel_name=kernel, extra_arguments=HISTORY, timeout=60, config=_config(kernel))
    with runner.setup_kernel(cwd=str(cwd)):
        runner.execute_cell(nb.cells[0], 0)
        with pytest.raises(DeadKernelError):
            runner.execute_cell(nb.cells[1], 1)
        assert runner.km is not None
        run_sync(runner.km.restart_kernel)(now=True)
        assert isinstance(runner.km.provisioner, ForkingProvisioner) == (kernel == KERNEL_NAME)
        if kernel == KERNEL_NAME:
            assert runner.km.provisioner.forked  # the restart forked again
        run_sync(runner.kc.wait_for_ready)(timeout=60)  # type: ignore[union-attr]
        probe = nbformat.v4.new_code_cell("print('alive', 'x' in globals())")
        nb.cells.append(probe)
        runner.execute_cell(probe, 2)
        assert probe.outputs[0]["text"] == "alive False\n", (kernel, crash)


def test_a_crash_is_a_dead_kernel_and_a_restart_works(tmp_path: Path) -> None:
    """os._exit and SIGKILL in a cell: nbclient reports DeadKernelError; the manager restarts it.
    (The four cases run side by side: nbclient needs a second to notice each dead kernel.)"""
    crashes = ("import os; os._exit(1)", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    cases = [(kernel, crash, tmp_path / f"{kernel}-{index}") for kernel in KERNELS for index, crash in enumerate(crashes)]
    _side_by_side(_crash_and_restart, cases)


def _interrupted(kernel: str, cwd: Path) -> dict[str, object]:
    km = KernelManager(kernel_name=kernel, **_sockets(kernel))
    km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        msg_id = kc.execute("import time\ntime.sleep(30)")
        time.sleep(1.0)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=20)
        while reply["msg_type"] == "kernel_info_reply":  # a late answer to wait_for_ready's repeated asks
            reply = kc.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == msg_id
        errors = []
        while True:
            msg = kc.get_iopub_msg(timeout=5)
            if msg["msg_type"] == "error":
                errors.append({k: msg["content"][k] for k in ("ename", "evalue", "traceback")})
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        content = reply["content"]
        return {"status": content["status"], "ename": content.get("ename"), "errors": errors, "alive": km.is_alive()}
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_an_interrupt_gives_the_same_keyboardinterrupt(tmp_path: Path) -> None:
    fresh, forked = _side_by_side(_interrupted, [(kernel, tmp_path / kernel) for kernel in KERNELS])
    assert fresh["ename"] == "KeyboardInterrupt" and fresh["alive"]
    assert forked == fresh


def _timed_out(kernel: str, cwd: Path) -> tuple[str, list[object], list[object]]:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(30)"), nbformat.v4.new_code_cell("print('next')")]
    )
    runner = NotebookClient(
        nb, kernel_name=kernel, extra_arguments=HISTORY, timeout=2, interrupt_on_timeout=True, allow_errors=True,
        config=_config(kernel),
    )
    with runner.setup_kernel(cwd=str(cwd)):
        error = ""
        try:
            runner.execute_cell(nb.cells[0], 0)
        except CellTimeoutError as exc:  # pragma: no cover - with interrupt_on_timeout it is reported as output
            error = type(exc).__name__
        runner.execute_cell(nb.cells[1], 1)
    return error, [ANSI.sub("", json.dumps(o)) for o in nb.cells[0].outputs], [dict(o) for o in nb.cells[1].outputs]


def test_a_cell_timeout_with_interrupt_behaves_the_same(tmp_path: Path) -> None:
    fresh, forked = _side_by_side(_timed_out, [(kernel, tmp_path / kernel) for kernel in KERNELS])
    assert "KeyboardInterrupt" in json.dumps(fresh[1]) and fresh[2][0]["text"] == "next\n"
    assert forked == fresh


#: A hostile cell from the grading corpus: the kernel's own loop then fails, and its error report too.
BREAK_BUILTINS = "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.callable = lambda x: False\n"


#: How long after their builtins break the kernels' exit statuses are read: ipykernel's
#: IOStream.flush gives up after 10 s, then the app fails.
BROKEN_WAIT = 14.0


@pytest.fixture(scope="module", autouse=True)
def _broken_builtins_kernels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], list[int | None]]]:
    """Each kernel started and its builtins broken when this module starts, side by side, so the
    wait below overlaps the module's other tests instead of adding to them. Gives a function that
    returns each kernel's exit status (None: alive) once BROKEN_WAIT seconds have passed since."""
    cwd = tmp_path_factory.mktemp("broken-builtins")
    managers = [KernelManager(kernel_name=kernel, **_sockets(kernel)) for kernel in KERNELS]
    clients = []
    try:
        with pytest.MonkeyPatch.context() as patch:  # as _single_threaded_blas sets it for every test
            patch.setenv("OMP_NUM_THREADS", "1")
            patch.delenv("MLOPS_COLD", raising=False)
            for km in managers:
                km.start_kernel(cwd=str(cwd))
                kc = km.client()
                kc.start_channels()
                clients.append(kc)
        for kc in clients:
            kc.wait_for_ready(timeout=60)
            kc.execute(BREAK_BUILTINS)
        broken = time.monotonic()

        def statuses() -> list[int | None]:
            time.sleep(max(0.0, broken + BROKEN_WAIT - time.monotonic()))
            found = []
            for km in managers:
                assert km.provisioner is not None
                status = km.provisioner.process.poll()  # type: ignore[attr-defined]
                found.append(None if status is None else int(status))
            return found

        yield statuses
    finally:
        for kc in clients:
            kc.stop_channels()
        for km in managers:
            if km.has_kernel:
                km.shutdown_kernel(now=True)


def test_a_kernel_whose_builtins_are_broken_hangs_as_a_fresh_one_does(
    _broken_builtins_kernels: Callable[[], list[int | None]],
) -> None:
    """The kernel app fails, then so does sys.excepthook. A fresh interpreter then shuts down, and it
    waits for the kernel's non-daemon threads: the kernel hangs, and a grader sees a cell timeout, not a
    dead kernel. A forked kernel must end the same way and must not die on the failed error report."""
    fresh, forked = _broken_builtins_kernels()
    assert fresh is None, f"the stock kernel exited with {fresh}: this test's premise no longer holds"
    assert forked is None, f"the forked kernel exited with {forked}; a fresh one keeps hanging"


#: The start-up environment of the zygote the startup-variables test starts: `test_a_kernel_dies_with_its_zygote`
#: kills that one (reused when that test ran first in this process), not the shared zygote, which
#: the reference notebooks' run that follows in the same pytest worker goes on using.
SEEDED = {"PYTHONHASHSEED": "1"}


def _hash_in_forked_kernel(cwd: Path, env: dict[str, str]) -> tuple[str, bool]:
    """What ``print(hash('forkkernel'))`` prints in a python3-forked kernel started with ``env``,
    and whether that kernel was forked from a zygote."""
    km = KernelManager(kernel_name=KERNEL_NAME)
    km.start_kernel(cwd=str(cwd), env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        out: list[str] = []
        kc.execute_interactive(
            "print(hash('forkkernel'))",
            timeout=30,
            output_hook=lambda m: out.append(m["content"].get("text", "")),
        )
        provisioner = km.provisioner
        return "".join(out), isinstance(provisioner, ForkingProvisioner) and provisioner.forked
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_kernel_with_other_startup_variables_is_fresh(tmp_path: Path) -> None:
    """PYTHONHASHSEED acts at interpreter start: a kernel asking for its own gets an interpreter
    started with it (here: a zygote of its own, started with that environment), never the shared
    zygote's seed. The shared zygote's kernel, beside it, proves the test can tell the two apart."""
    shared_env = {key: value for key, value in os.environ.items() if key != "PYTHONHASHSEED"}
    seeded_env = {**shared_env, **SEEDED}
    seeded, seeded_forked = _hash_in_forked_kernel(tmp_path, seeded_env)
    shared, shared_forked = _hash_in_forked_kernel(tmp_path, shared_env)
    expected = subprocess.run(
        [sys.executable, "-c", "print(hash('forkkernel'))"], env=seeded_env, capture_output=True, text=True, check=True
    ).stdout
    assert seeded == expected, "the kernel did not get the hash seed its environment asked for"
    assert shared_forked and shared != expected, (
        f"the shared zygote's kernel (forked: {shared_forked}) printed {shared!r}, the seeded one's hash: "
        "this test could not tell a kernel that ignores its seed from one that honours it"
    )
    assert seeded_forked, "a kernel with its own startup variables is forked from a zygote started with them"


def test_commands_that_are_not_ipykernel_are_not_forked() -> None:
    assert client.interpreter_part([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"]) == (sys.executable,)
    assert client.interpreter_part([sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher"]) is not None
    assert client.interpreter_part([sys.executable, "-m", "other_kernel", "-f", "c.json"]) is None
    assert client.interpreter_part([sys.executable, "-W", "error", "-m", "ipykernel_launcher"]) is None
    assert client.launch(["/bin/sh", "-c", "true"], env=dict(os.environ), cwd=".") is None


PARENT = textwrap.dedent(
    """
    import os, sys, time
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name=sys.argv[1])
    km.start_kernel()
    kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=120)
    print(km.provisioner.pid, km.provisioner.forked, km.ip, flush=True)
    time.sleep(float(sys.argv[2]))
    os._exit(0)  # no shutdown: the parent just dies
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def test_kernels_end_when_their_parent_dies(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PARENT, KERNEL_NAME, "0"], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    pid, forked, sockets = done.stdout.split()
    assert forked == "True", done.stderr
    assert _wait_gone(int(pid)), "the forked kernel outlived its parent"
    folder, deadline = Path(sockets).parent, time.monotonic() + 10
    while folder.exists() and time.monotonic() < deadline:  # the zygote removes it once its kernels are stopped
        time.sleep(0.1)
    assert not folder.exists(), "the socket folder of a kernel whose parent died was left behind"


def test_a_kernel_dies_with_its_zygote(tmp_path: Path) -> None:
    km = KernelManager(kernel_name=KERNEL_NAME)
    km.start_kernel(cwd=str(tmp_path), env={**os.environ, **SEEDED})
    try:
        provisioner = km.provisioner
        assert isinstance(provisioner, ForkingProvisioner) and provisioner.forked
        zygote = next(z for z in client._zygotes.values() if provisioner.pid in z.launched)
        os.kill(zygote.process.pid, signal.SIGKILL)
        assert provisioner.process is not None
        assert provisioner.process.wait(10) == -signal.SIGKILL  # reported as killed, as Popen would
        assert _wait_gone(provisioner.pid)
        assert not km.is_alive()
    finally:
        km.shutdown_kernel(now=True)


def test_cold_mode_launches_fresh_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_COLD", "1")
    km = KernelManager(kernel_name=KERNEL_NAME)
    km.start_kernel(cwd=str(tmp_path))
    try:
        assert isinstance(km.provisioner, ForkingProvisioner) and not km.provisioner.forked
        assert km.is_alive()
    finally:
        km.shutdown_kernel(now=True)


