"""What a sandboxed process sees and can do (fast: plain Python, no kernel)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.grading import sandbox, session
from scripts.grading.assign import MANIFESTS, REPO
from scripts.grading.zygote import shared as shared_zygote

PROBE = r"""
import json, os, socket, resource
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))  # first: before the probe opens anything
seen = {
    "fds": fds,
    "repo": sorted(os.listdir(REPO)),
    "github": sorted(os.path.relpath(os.path.join(d, f), REPO) for d, _, fs in os.walk(os.path.join(REPO, ".github"))
                     for f in fs),
    "manifests": os.listdir(MANIFESTS),
    "pid": os.getpid(),
    "uid": os.getuid(),
    "home_visible": os.path.exists("/root/.bashrc") or os.path.exists(os.path.expanduser("~/.cache/pip")),
    "cwd": os.getcwd(),
    "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
    "as": resource.getrlimit(resource.RLIMIT_AS)[0],
}
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); seen["loopback"] = True
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2); seen["internet"] = True
except OSError:
    seen["internet"] = False
for target in (os.path.join(REPO, "scripts", "x"), "/usr/x", "/x"):
    try:
        open(target, "w"); seen.setdefault("wrote", []).append(target)
    except OSError:
        pass
open("own.txt", "w").write("mine")
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
seen["caps"] = {name: status[name].strip() for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
seen["no_new_privs"] = status["NoNewPrivs"].strip()
seen["processes"] = sorted(int(pid) for pid in os.listdir("/proc") if pid.isdigit())
try:
    os.unshare  # Python 3.12+
except AttributeError:
    import ctypes
    seen["new_user_namespace"] = ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0
print(json.dumps(seen))
"""


def probe_main() -> None:
    """The warm variant's entry (run by the zygote inside a sandbox): the same probe."""
    import sys

    exec(compile(sys.stdin.read(), "<probe>", "exec"), {"__name__": "__probe__"})


@pytest.fixture(scope="module", params=["fresh", "warm"])
def inside(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """What the probe saw in a sandbox: run by a fresh interpreter, or forked in by the grader's zygote."""
    workspace = tmp_path_factory.mktemp("ws")
    code = f"REPO = {str(REPO)!r}; MANIFESTS = {str(MANIFESTS)!r}\n" + PROBE
    if request.param == "fresh":
        argv = sandbox.command([sys.executable, "-c", code], workspace)
        done = subprocess.run(argv, env=sandbox.environment(), capture_output=True, text=True, timeout=60,
                              preexec_fn=sandbox.limiter(sandbox.Limits()))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout), workspace
    logs = tmp_path_factory.mktemp("logs")
    zygote = shared_zygote()  # the one `grade` forks every submission from (started by an earlier batch, or now)
    cgroup = sandbox.Cgroup(sandbox.Limits())
    with (logs / "stderr.log").open("wb") as errors:
        process, stdin, stdout = session.placed(zygote, "tests.grading.test_sandbox:probe_main", workspace, None,
                                                sandbox.Limits(), cgroup, errors)
        stdin.write(code.encode())
        stdin.close()
        seen = stdout.read()
        stdout.close()
        session._terminate(process, cgroup)
    assert seen, (logs / "stderr.log").read_text() + zygote.log.read_text()
    return json.loads(seen), workspace


def test_only_the_venv_and_scripts_of_the_repository_are_visible(inside: tuple[dict, Path]) -> None:
    seen, _ = inside
    assert set(seen["repo"]) <= {"scripts", ".venv", "eval_baseline.json", ".github"}, seen["repo"]
    assert seen["github"] == [".github/workflows/deploy-gate.yml"]  # Lab 04's workflow, nothing else of .github
    assert "solutions" not in seen["repo"] and seen["manifests"] == []
    assert not seen["home_visible"]


def test_isolated_process_tree_network_and_writes(inside: tuple[dict, Path]) -> None:
    seen, workspace = inside
    assert seen["pid"] < 10, "own PID namespace"
    assert seen["uid"] != 0 and seen["cwd"] == sandbox.INSIDE
    assert seen["loopback"] and not seen["internet"]
    assert "wrote" not in seen, seen.get("wrote")
    assert (workspace / "own.txt").read_text() == "mine"
    assert seen["as"] == sandbox.Limits().memory_bytes


def test_no_privilege_and_nothing_inherited(inside: tuple[dict, Path]) -> None:
    """The zygote's child ends up exactly as bubblewrap's own: no capability, no new privileges,
    no user namespace of its own, only its three standard streams, and only the sandbox's processes."""
    seen, _ = inside
    assert set(seen["caps"].values()) == {"0000000000000000"}, seen["caps"]
    assert seen["no_new_privs"] == "1"
    assert seen.get("new_user_namespace") is False
    assert seen["fds"] == [0, 1, 2, 3], seen["fds"]  # 3: the one listing /proc/self/fd
    assert max(seen["processes"]) < 10, seen["processes"]
    assert seen["uid"] == 65534
