"""The warm interpreter: a forked child behaves like ``python -m`` in a fresh interpreter."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from scripts.forkkernel import KERNEL_NAME
from scripts.mlops import warm
from tests.support import kernel_sockets

PROBE = """
import os, random, sys, tempfile
print("argv", sys.argv[1:])
print("cwd", os.getcwd())
print("path0", sys.path[0])
print("env", os.environ.get("PROBE_VALUE"), "PARENT_ONLY" in os.environ)
print("tmp", tempfile.gettempdir())
print("random", random.random())
print("to stderr", file=sys.stderr)
mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode == "raise":
    raise RuntimeError("boom from the probe")
if mode == "kill":
    os.kill(os.getpid(), 9)
if mode == "text":
    sys.exit("a message instead of a status")
sys.exit(int(mode or 0))
"""


def _run(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    (tmp_path / "probe_module.py").write_text(PROBE)
    printed: list[bytes] = []
    code = warm.run_module(["probe_module", *args], env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path), **env},
                           cwd=str(tmp_path), on_output=printed.append)
    return code, b"".join(printed).decode()


@pytest.fixture(autouse=True)
def _only_the_parent_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARENT_ONLY", "1")


@pytest.fixture(autouse=True)
def _single_threaded_blas(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `make` exports it: one BLAS/OpenMP thread, so the kernels' zygote can fork (run alone,
    without it, the forked-kernel tests here would get a fresh kernel and fail for that reason)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MLOPS_COLD", raising=False)


def test_the_child_gets_the_steps_environment_folder_and_arguments(tmp_path: Path) -> None:
    code, printed = _run(tmp_path, "7", "--flag", PROBE_VALUE="from the step")
    assert code == 7
    lines = printed.splitlines()
    assert "argv ['7', '--flag']" in lines
    assert f"cwd {tmp_path}" in lines and f"path0 {tmp_path}" in lines
    assert "env from the step False" in lines  # replaced, not merged with the parent's environment
    assert f"tmp {tmp_path}" in lines  # TMPDIR is read again
    assert "to stderr" in lines  # standard error is collected with standard output


def test_exit_statuses_are_the_interpreters(tmp_path: Path) -> None:
    code, printed = _run(tmp_path, "raise")
    assert code == 1 and "RuntimeError: boom from the probe" in printed and "Traceback" in printed
    code, printed = _run(tmp_path, "text")
    assert code == 1 and "a message instead of a status" in printed
    code, _ = _run(tmp_path, "kill")
    assert code == 128 + 9
    assert _run(tmp_path)[0] == 0


def test_threads_running_commands_side_by_side_each_get_their_own_status(tmp_path: Path) -> None:
    """Four threads run commands at once, as two workflow runs side by side do. multiprocessing
    reads a child's exit status from a pipe, and each start first reads the status of every child
    that has ended: without the module's lock, a thread could find its child's pipe drained by
    another thread and report exit status 255 (4 threads x 40 commands: 13-26 of 160)."""
    import threading

    (tmp_path / "probe_module.py").write_text(PROBE)
    env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)}
    statuses = (0, 3, 5, 7)
    found: dict[int, list[int]] = {}

    def run(status: int) -> None:
        found[status] = [
            warm.run_module(["probe_module", str(status)], env=env, cwd=str(tmp_path), on_output=lambda _: None)
            for _ in range(25)
        ]

    threads = [threading.Thread(target=run, args=(status,)) for status in statuses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert found == {status: [status] * 25 for status in statuses}


def test_each_child_draws_its_own_random_numbers(tmp_path: Path) -> None:
    draws = {next(line for line in _run(tmp_path)[1].splitlines() if line.startswith("random")) for _ in range(3)}
    assert len(draws) == 3


def test_startup_variables_that_differ_need_a_fresh_interpreter() -> None:
    assert warm.fits(dict(os.environ))
    assert not warm.fits({**os.environ, "PYTHONPATH": "/somewhere/else"})
    assert not warm.fits({**os.environ, "OMP_NUM_THREADS": "7"})
    assert warm.fits({**os.environ, "PYTHONUNBUFFERED": "1", "ANYTHING_ELSE": "x"})


def test_mlops_cold_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_COLD", "1")
    assert not warm.enabled()
    monkeypatch.setenv("MLOPS_COLD", "0")
    assert warm.enabled() == (sys.platform != "win32")


def test_the_warm_interpreter_stops_with_its_parent(tmp_path: Path) -> None:
    script = (
        "import os\nfrom multiprocessing import forkserver\nfrom scripts.mlops import warm\n"
        "warm.run_module(['scripts.mlops', '--help'], env=dict(os.environ), cwd=os.getcwd(), on_output=lambda b: None)\n"
        "print(forkserver._forkserver._forkserver_pid)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    _gone_within([int(done.stdout.split()[-1])], 10)


SCHEMA_PROBE = """
from mlflow.store.db import utils
cached = utils._get_latest_schema_revision
print(cached(), cached.__wrapped__(), cached.cache_info().misses)
"""


def test_a_command_inherits_mlflows_schema_revision_from_the_warm_interpreter(tmp_path: Path) -> None:
    """The preload computes MLflow's newest schema revision once; a forked command gets it without
    loading the migration scripts again, and it is the value MLflow computes itself."""
    (tmp_path / "schema_probe.py").write_text(SCHEMA_PROBE)
    printed: list[bytes] = []
    code = warm.run_module(["schema_probe"], env={"PATH": os.environ["PATH"]}, cwd=str(tmp_path),
                           on_output=printed.append)
    assert code == 0, b"".join(printed).decode()
    cached, computed, misses = b"".join(printed).decode().split()
    assert cached == computed and misses == "1"  # the one computation was the warm interpreter's


def test_a_warm_process_can_be_its_own_fork_server(tmp_path: Path) -> None:
    """fork_server_from_here: the fork server is a fork of the caller (same command line, no new
    interpreter), in its own process group; multiprocessing uses it, and it ends with the caller."""
    script = (
        "import os, sys\nfrom multiprocessing import forkserver\nfrom scripts.mlops import warm\n"
        "assert warm.fork_server_from_here() and not warm.fork_server_from_here()  # once\n"
        "pid = forkserver._forkserver._forkserver_pid\n"
        "code = warm.run_module(['probe_module', '5'], env={'PATH': os.environ['PATH']}, cwd=os.getcwd(),"
        " on_output=sys.stdout.buffer.write)\n"
        "sys.stdout.flush()\n"
        "print(code, pid, forkserver._forkserver._forkserver_pid, os.getpgid(pid) == pid,"
        " open(f'/proc/{pid}/cmdline', 'rb').read() == open('/proc/self/cmdline', 'rb').read())\n"
    )
    (tmp_path / "probe_module.py").write_text(PROBE)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"cwd {tmp_path}" in done.stdout.splitlines()  # the command ran, in a child of the fork server
    code, pid, still, own_group, same_command = done.stdout.splitlines()[-1].split()
    assert (code, still, own_group, same_command) == ("5", pid, "True", "True"), done.stdout
    _gone_within([int(pid)], 10)


KERNEL_CELL = """
import os
from multiprocessing import forkserver, resource_tracker
from scripts.mlops import warm
code = warm.run_module(["scripts.mlops", "--help"], env=dict(os.environ), cwd=os.getcwd(), on_output=lambda b: None)
helpers = [forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid]
print(code, *helpers, *(os.getpgid(pid) == os.getpgrp() for pid in helpers))
"""
#: What ipykernel's shutdown will wait for: the kernel's descendants in its process group.
GROUP_CELL = """
import os, psutil
print([(p.pid, p.status(), " ".join(p.cmdline())[:80]) for p in psutil.Process().children(recursive=True)
       if os.getpgid(p.pid) == os.getpgrp()])
"""


def test_a_kernel_that_ran_a_warm_command_shuts_down_by_itself(tmp_path: Path) -> None:
    """ipykernel's shutdown signals every process in the kernel's process group and waits until
    none is left; the fork server and its resource tracker live in a group of their own, so the
    kernel exits by itself (status 0) instead of being killed by its manager 2.5 s later. They
    still end with the kernel. The stock kernel is the one students run the labs in."""
    km = KernelManager(kernel_name="python3", **kernel_sockets())  # Unix sockets: no port race
    # jupyter_client sends SIGTERM after half of this (default 5 s): on a loaded machine (make test
    # runs a worker per core plus one) a kernel that stops the fork server on its way out can take
    # longer than 2.5 s. A kernel waiting for a process of its own group never exits by itself,
    # however long it is given, so the longer deadline does not hide that fault.
    km.shutdown_wait_time = 30.0
    km.start_kernel(cwd=str(tmp_path), extra_arguments=["--HistoryManager.hist_file=:memory:"])
    kc = km.client()
    kc.start_channels()
    printed: list[str] = []
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive(
            KERNEL_CELL, timeout=120,
            output_hook=lambda msg: printed.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        group: list[str] = []
        kc.execute_interactive(
            GROUP_CELL, timeout=30, output_hook=lambda msg: group.append(msg["content"].get("text", ""))
        )
        process = km.provisioner.process  # type: ignore[union-attr]
    finally:
        kc.stop_channels()
        start = time.monotonic()
        km.shutdown_kernel(now=False)
        took = time.monotonic() - start
    assert process.poll() == 0, (
        f"the kernel was killed ({process.poll()}) after {took:.1f} s of shutdown; "
        f"its process group before the shutdown: {''.join(group).strip()}; helpers: {''.join(printed).strip()}"
    )
    code, server, tracker, *same_group = "".join(printed).split()
    assert code == "0" and same_group == ["False", "False"], printed
    _gone_within([int(server), int(tracker)], 10)


SLOW_STEP = "import os, sys, time\nprint('started', os.getpid(), flush=True)\ntime.sleep(float(sys.argv[1]))\n"
STARTED = re.compile(r"started (\d+)\n")


SESSION_LEADER = (
    "import subprocess, sys, time\n"
    "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(helper.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def test_a_command_in_a_session_of_its_own_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    """``new_session=True`` as ``Popen(start_new_session=True)``: the child leads a session, its own
    children are in it, and ``stop_session`` stops them all (how a forked ``mlflow server`` and its
    uvicorn process are stopped). Without it, a child stays in the fork server's session."""
    from scripts.mlops import procs

    (tmp_path / "session_leader.py").write_text(SESSION_LEADER)
    log = tmp_path / "leader.log"
    env = {"PATH": os.environ["PATH"]}
    process = warm.start(["session_leader"], env=env, cwd=str(tmp_path), output=str(log), new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (log.is_file() and log.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)  # the child opens the log itself
        assert log.is_file() and log.read_text().strip(), "the child printed its helper's pid within 30 s"
        helper = int(log.read_text().split()[0])
        assert os.getsid(process.pid) == process.pid and os.getpgid(process.pid) == process.pid
        assert os.getsid(helper) == process.pid  # the helper is in the child's session
        assert os.getsid(os.getpid()) != process.pid
    finally:
        code = procs.stop_session(process)
    assert code == -signal.SIGTERM, code
    deadline = time.monotonic() + 10
    while procs.alive(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not procs.alive(helper), f"the helper {helper} outlived its session"

    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    plain = warm.start(["slow_step", "30"], env=env, cwd=str(tmp_path), output=str(tmp_path / "plain.log"))
    try:
        assert os.getsid(plain.pid) != plain.pid  # the fork server's session, as before
    finally:
        plain.kill()
        plain.wait(10)


def test_a_command_that_overruns_its_timeout_is_killed_and_what_it_printed_is_kept(tmp_path: Path) -> None:
    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    printed: list[bytes] = []
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        warm.run_module(["slow_step", "60"], env={"PATH": os.environ["PATH"]}, cwd=str(tmp_path),
                        on_output=printed.append, timeout=1.5)  # fmt: skip
    assert time.monotonic() - started < 10
    line = b"".join(printed).decode()
    assert line.startswith("started "), line
    pid = int(line.split()[1])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), f"the overrunning child {pid} still runs"
    assert warm.running()
    code = warm.run_module(["slow_step", "0"], env={"PATH": os.environ["PATH"]}, cwd=str(tmp_path),
                           on_output=lambda b: None, timeout=30)  # fmt: skip
    assert code == 0  # in time: its status, as without a timeout


def test_an_interrupted_cell_stops_its_step_and_leaves_the_fork_server_serving(tmp_path: Path) -> None:
    """In a forked kernel (its fork server forked from it): interrupting a cell that waits for a
    step stops that step (KeyboardInterrupt, as in a fresh kernel), and the interrupt, which goes
    to the kernel's process group, does not reach the fork server: the next step is forked by
    the same server."""
    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    setup = (
        "import os\nfrom multiprocessing import forkserver\nfrom scripts.mlops import warm\n"
        "def step(seconds):\n"
        "    return warm.run_module(['slow_step', str(seconds)], env=dict(os.environ), cwd=os.getcwd(),"
        " on_output=lambda b: print(b.decode(), end=''))\n"
        "def server():\n    return forkserver._forkserver._forkserver_pid\n"
    )
    km = KernelManager(kernel_name=KERNEL_NAME)
    km.start_kernel(cwd=str(tmp_path), extra_arguments=["--HistoryManager.hist_file=:memory:"])
    kc = km.client()
    kc.start_channels()
    printed: list[str] = []

    def run(code: str, timeout: float = 60) -> dict:
        return kc.execute_interactive(code, timeout=timeout, output_hook=lambda msg: printed.append(
            msg["content"].get("text", "") if msg["msg_type"] == "stream" else msg["content"].get("ename", "")))

    try:
        kc.wait_for_ready(timeout=60)
        assert run(setup + "print('server', server())")["content"]["status"] == "ok"
        msg_id = kc.execute("step(60)")
        deadline = time.monotonic() + 30
        # The whole line: the kernel may send "started PID" in more than one stream message.
        while not STARTED.search("".join(printed)) and time.monotonic() < deadline:
            msg = kc.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
        interrupted = STARTED.search("".join(printed))
        assert interrupted, f"the step did not print its pid within 30 s: {printed}"
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=30)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        # After an error ipykernel aborts the requests already queued (stop_on_error); the end of
        # that window is queued before the interrupted request's "idle". A request sent only after
        # that status is never aborted (one sent right after the reply could be, as in JupyterLab).
        status = None
        while status != "idle":
            msg = kc.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status":
                status = msg["content"]["execution_state"]
        assert run("print('exit', step(0), 'server', server())")["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    servers = [line.split()[-1] for line in "".join(printed).splitlines() if "server" in line]
    assert len(servers) == 2 and servers[0] == servers[1] != "None", printed
    assert "exit 0 server" in "".join(printed), printed
    _gone_within([int(interrupted.group(1))], 5)


def _gone_within(pids: list[int], seconds: float) -> None:
    """Wait until none of ``pids`` runs; after ``seconds``, kill the ones left and fail naming them."""
    deadline = time.monotonic() + seconds
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _running(pid)]
        time.sleep(0.1)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert not pids, f"{pids} outlived their parent by {seconds} s"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
