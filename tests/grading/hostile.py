"""Hostile Lab 00 submissions: one per row of the attack table in issue 8, each with the exact
score, status and flags it must get, next to honest classmates who must keep full marks.

Each attack is a blank (or solved) Lab 00 notebook with extra cells. Paths an attacker would
have to guess (the grader's output folder, a neighbour's work folder) are filled in when the
corpus is built, so the attacks are as strong as a student who read the grader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from scripts.grading.grade import slug
from tests.grading.corpus import FULL, LAB, SOLUTION, _cell, _load, _save

MARKER = "9007.25"  # `sleep 9007.25`: detached processes that must not survive the batch
SECRET = "grader-secret-7d1e"  # an environment variable of the grader that no kernel may read
FULL_NO_HIDDEN = {k: v for k, v in FULL.items()}  # no held-out check in this batch
FULL_NO_HIDDEN["00.4"] = 4


@dataclass(frozen=True)
class Attack:
    name: str
    scores: dict[str, float] | None  # None: every exercise 0
    status: str
    flags: tuple[str, ...]
    cells: list[str] = field(default_factory=list)  # student cells inserted after the setup cell
    base: str = "blank"  # "blank" or "solution"
    before_setup: bool = False
    mutate: Callable[[nbformat.NotebookNode], None] | None = None


def _insert(nb: nbformat.NotebookNode, sources: list[str], *, before_setup: bool) -> None:
    index = next(i for i, cell in enumerate(nb.cells) if cell.get("id") == "setup")
    position = index if before_setup else index + 1
    for offset, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source)
        cell.id = f"attack-{offset}"
        nb.cells.insert(position + offset, cell)


PUBLISH_HOOK = """
from IPython.display import display
def _forge(info=None):
    for ex, pts in {"00.1": 3, "00.2": 7, "00.3": 3, "00.4": 4}.items():
        display({"application/vnd.mlops-labs.check+json": {"id": ex + "-a", "exercise": ex, "passed": True,
                 "points": pts, "earned": pts, "message": "forged"}}, raw=True)
get_ipython().events.register("pre_run_cell", _forge)
"""
FAKE_EXERCISE = """
import scripts.grading.checks as _checks
class FakeExercise(_checks.Exercise):
    def __exit__(self, *exc):
        return True  # swallow every failure
exercise = FakeExercise
"""
WRAP_PUBLISH = """
_pub = get_ipython().display_pub.publish
def _publish(data, metadata=None, **kw):
    record = data.get("application/vnd.mlops-labs.check+json")
    if record:
        record.update(passed=True, earned=record["points"])
    return _pub(data, metadata, **kw)
get_ipython().display_pub.publish = _publish
"""
FAKE_MODULE = """
import sys, types
fake = types.ModuleType("scripts.grading.checks")
class _Yes:
    def __enter__(self): return self
    def __exit__(self, *a): return True
    def __getattr__(self, name): return lambda *a, **k: True
fake.exercise = lambda *a, **k: _Yes()
sys.modules["scripts.grading.checks"] = fake
"""
REBIND = """
class _Anything:
    def __getattr__(self, name): return self
    def __call__(self, *a, **k): return self
    def __getitem__(self, k): return self
    def __iter__(self): return iter([])
    def __eq__(self, other): return True
client = registry = first = _Anything()
"""
BUILTINS = """
import builtins
builtins.isinstance = lambda *a: True
builtins.abs = lambda x: 0
builtins.callable = lambda x: False
"""
ALWAYS_EQUAL = """
import sys
class AlwaysEqual(str):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = str.__hash__
class Sneaky(float):
    def __float__(self):
        return sys._getframe(1).f_locals.get("expected", 0.0)
hardest_slice = AlwaysEqual("anything")
hardest_gap = Sneaky(0.0)
leaderboard = AlwaysEqual("x")
champion_version = AlwaysEqual("7")
champion_accuracy = Sneaky(0.0)
"""
LOG_METRIC = """
client.log_metric(first.run_id, "accuracy.zzz", 0.0)
hardest_slice = "zzz"
hardest_gap = round(first.accuracy - 0.0, 4)
"""
EXEC_SOLUTION = """
import json, pathlib, scripts
repo = pathlib.Path(scripts.__path__[0]).parent
solution = json.loads((repo / "solutions" / "00-first-model.ipynb").read_text())
for cell in solution["cells"]:
    if cell["cell_type"] == "code" and "lab-check" not in cell["metadata"].get("tags", []):
        exec("".join(cell["source"]), globals())
"""
REWRITE_OUT = """
import os, subprocess, sys
out = {out!r}
script = f'''
import time, pathlib
time.sleep(3)
for name in ("gradebook.csv", "gradebook.json"):
    pathlib.Path({out!r}, name).write_text("pwned")
for path in pathlib.Path({out!r}, "results").glob("*.json"):
    path.write_text("pwned")
'''
subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
try:
    os.makedirs(os.path.join(out, "results.json"))
except OSError as error:
    print("blocked:", error)
"""
HARM_NEIGHBOUR = """
import os, pathlib, sqlite3
neighbour = pathlib.Path({neighbour!r})
for target in (neighbour / "mlflow.py", neighbour / ".mlops" / "00-first-model" / "mlflow.db"):
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("raise ImportError('sabotaged')")
    except OSError as error:
        print("blocked:", error)
cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "mlops-labs"
for template in cache.glob("*.db"):
    try:
        template.write_bytes(b"garbage")
    except OSError as error:
        print("blocked:", error)
"""
IGNORE_SIGINT = """# Exercise 00.3
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    print("still here " * 50, flush=True)
    time.sleep(0.01)
"""
KILL_CONTROLLER = """
import os, signal
mine = {os.getpid()}
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) not in mine and int(pid) != 1:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
"""
READ_GRADER = """
import os
found = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            found.append(open(f"/proc/{pid}/environ").read())
        except OSError:
            pass
        try:
            with open(f"/proc/{pid}/fd/2", "w") as terminal:
                terminal.write("INJECTED-INTO-TERMINAL")
        except OSError:
            pass
hardest_slice = "LEAKED" if {secret!r} in " ".join(found) else "clean"
"""
DETACHED = """
import subprocess
for _ in range(20):
    subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
"""
ALLOCATE = """
try:
    hog = bytearray(16 * 1024**3)
except MemoryError:
    print("refused")
"""
HUGE_ERROR = """# Exercise 00.1
raise ValueError("x" * 20_000_000)
"""


def _strip_ids(nb: nbformat.NotebookNode) -> None:
    """Marker: :func:`build` writes this notebook as nbformat 4.4 without cell ids."""


def _ex3(source: str) -> Callable[[nbformat.NotebookNode], None]:
    def mutate(nb: nbformat.NotebookNode) -> None:
        _cell(nb, "ex3").source = source
    return mutate


def _ex1(source: str) -> Callable[[nbformat.NotebookNode], None]:
    def mutate(nb: nbformat.NotebookNode) -> None:
        _cell(nb, "ex1").source = source
    return mutate


HONEST = "honest-neighbour.ipynb"
ATTACKS: list[Attack] = [
    Attack("pre-run-hook.ipynb", None, "ok", ("suspicious",), [PUBLISH_HOOK]),
    Attack("fake-exercise.ipynb", None, "ok", (), [FAKE_EXERCISE]),
    Attack("wrap-display-pub.ipynb", None, "ok", ("suspicious",), [WRAP_PUBLISH]),
    Attack("fake-module-before-setup.ipynb", None, "ok", ("suspicious",), [FAKE_MODULE], before_setup=True),
    Attack("rebind-globals.ipynb", None, "ok", (), [REBIND]),
    # The patched builtins hang the kernel's own machinery: the cell times out, the kernel is
    # replaced, and the attack is gone with it.
    Attack("patch-builtins.ipynb", None, "timeout", ("suspicious", "timeout@student-2"), [BUILTINS]),
    Attack("always-equal.ipynb", None, "ok", (), [ALWAYS_EQUAL]),
    Attack("log-metric.ipynb", None, "ok", ("suspicious",), [LOG_METRIC]),
    Attack("exec-solution.ipynb", None, "ok", ("suspicious",), [EXEC_SOLUTION]),
    Attack("rewrite-out.ipynb", None, "ok", ("suspicious",), [REWRITE_OUT]),
    Attack("harm-neighbour.ipynb", None, "ok", (), [HARM_NEIGHBOUR]),
    Attack("ignore-sigint.ipynb", {"00.1": 3, "00.2": 7, "00.3": 0, "00.4": 4}, "timeout",
           ("suspicious", "timeout@ex3"), base="solution", mutate=_ex3(IGNORE_SIGINT)),
    Attack("kill-controller.ipynb", None, "incomplete", ("suspicious",), [KILL_CONTROLLER]),
    Attack("read-grader.ipynb", None, "ok", ("suspicious",), [READ_GRADER]),
    Attack("detached-sleepers.ipynb", None, "ok", ("suspicious",), [DETACHED]),
    Attack("allocate.ipynb", None, "ok", (), [ALLOCATE]),
    Attack("huge-error.ipynb", {"00.1": 0, "00.2": 7, "00.3": 3, "00.4": 4}, "ok", (), base="solution", mutate=_ex1(HUGE_ERROR)),
    Attack("old-jupyter.ipynb", FULL_NO_HIDDEN, "ok", ("matched_by_content",), base="solution", mutate=_strip_ids),
    Attack('=HYPERLINK("evil.example").ipynb', None, "ok", ()),
]


def build(folder: Path, out: Path) -> list[Path]:
    """Write every attack, an honest neighbour and a symlink to the solution into ``folder``."""
    neighbour = out / "work" / slug(HONEST)
    paths = []
    for attack in ATTACKS:
        nb = _load(SOLUTION if attack.base == "solution" else LAB)
        sources = [s.replace("{out!r}", repr(str(out))).replace("{neighbour!r}", repr(str(neighbour))).replace("{marker}", MARKER).replace("{secret!r}", repr(SECRET))
                   for s in attack.cells]
        _insert(nb, sources, before_setup=attack.before_setup)
        if attack.mutate:
            attack.mutate(nb)
        path = folder / attack.name
        if attack.mutate is _strip_ids:  # as an older Jupyter saves it: nbformat 4.4, no cell ids
            raw = json.loads(json.dumps(nb))
            for cell in raw["cells"]:
                cell.pop("id", None)
            raw["nbformat_minor"] = 4
            path.write_text(json.dumps(raw, indent=1))
        else:
            _save(nb, path)
        paths.append(path)
    paths.append(_save(_load(SOLUTION), folder / HONEST))
    link = folder / "symlink.ipynb"
    os.symlink(SOLUTION, link)
    paths.append(link)
    return paths
