"""What a sandboxed process sees and can do (fast: plain Python, no kernel)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.grading import sandbox
from scripts.grading.assign import MANIFESTS, REPO

PROBE = r"""
import json, os, socket, resource
seen = {
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
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def inside(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    workspace = tmp_path_factory.mktemp("ws")
    code = f"REPO = {str(REPO)!r}; MANIFESTS = {str(MANIFESTS)!r}\n" + PROBE
    argv = sandbox.command([sys.executable, "-c", code], workspace)
    done = subprocess.run(argv, env=sandbox.environment(), capture_output=True, text=True, timeout=60,
                          preexec_fn=sandbox.limiter(sandbox.Limits()))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), workspace


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
