"""The attack table of issue 8, run as one batch next to an honest classmate: every attack gets
exactly what it deserved, the classmate keeps full marks, the gradebook is complete, nothing
outside the sandboxes changed and no process of the batch survives it."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scripts.grading.grade import grade, manifest_for
from tests.grading import hostile

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
#: The attacks that end in a cell timeout (a kernel hung on broken builtins, a loop that ignores
#: SIGINT) are graded in their own batch beside the rest, side by side (they spend most of it
#: waiting, not computing), with this short, explicit timeout: every other cell of those notebooks
#: takes a few seconds, and the hang is stopped after this long instead of after TIMEOUT. One
#: resumed run then writes the gradebook of the whole batch.
HANG_TIMEOUT = 15.0
HANGS = {attack.name for attack in hostile.ATTACKS if attack.status == "timeout"}

pytestmark = pytest.mark.slow


def _fingerprint(paths: list[Path]) -> dict[str, str]:
    """SHA-256 of every file below ``paths`` (what a kernel must not be able to change)."""
    found: dict[str, str] = {}
    for root in paths:
        for path in sorted(root.rglob("*") if root.is_dir() else [root]):
            if path.is_file() and "__pycache__" not in path.parts and ".mlops" not in path.parts:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _survivors(*outs: Path) -> list[str]:
    """Processes that still run a batch's marker command or sit in one of its output folders."""
    left = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if hostile.MARKER in command or any(cwd.startswith(str(out)) for out in outs):
            left.append(f"{proc.name}: {command[:120]} (cwd {cwd})")
    return left


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("hostile")
    out, hangs_out = tmp_path_factory.mktemp("graded"), tmp_path_factory.mktemp("graded-hangs")
    canary = tmp_path_factory.mktemp("outside") / "canary.txt"
    canary.write_text("untouched")
    guarded = [REPO / "scripts", REPO / "solutions", REPO / "labs", Path.home() / ".cache" / "mlops-labs", canary]
    paths = hostile.build(folder, out)
    before = _fingerprint(guarded)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADER_SECRET", hostile.SECRET)
        hanging = [path for path in paths if path.name in HANGS]
        with ThreadPoolExecutor(max_workers=1) as pool:
            hangs = pool.submit(grade, "00", hanging, hangs_out, jobs=len(hanging), timeout=HANG_TIMEOUT)
            grade("00", [path for path in paths if path.name not in HANGS], out, jobs=2, timeout=TIMEOUT)
            hangs.result()
        shutil.copytree(hangs_out / "results", out / "results", dirs_exist_ok=True)
        grade("00", paths, out, jobs=2, timeout=TIMEOUT, resume=True)
    with (out / "gradebook.csv").open() as handle:
        rows = {row["submission"]: row for row in csv.DictReader(handle)}
    return {"out": out, "rows": rows, "changed": before != _fingerprint(guarded), "survivors": _survivors(out, hangs_out),
            "canary": canary.read_text()}


@pytest.mark.parametrize("attack", hostile.ATTACKS, ids=[a.name for a in hostile.ATTACKS])
def test_attack_scores_what_it_deserves(batch: dict, attack: hostile.Attack) -> None:
    manifest = json.loads(manifest_for("00").read_text())
    name = attack.name if not attack.name.startswith("=") else "'" + attack.name  # neutralised in the CSV
    row = batch["rows"][name]
    expected = attack.scores or {exercise: 0 for exercise in manifest["exercises"]}
    assert {ex: float(row[ex]) for ex in manifest["exercises"]} == {k: float(v) for k, v in expected.items()}, row
    assert (row["status"], tuple(sorted(filter(None, row["flags"].split(";"))))) == (attack.status, tuple(sorted(attack.flags))), row


def test_honest_neighbour_keeps_full_marks_and_the_gradebook_is_complete(batch: dict) -> None:
    rows = batch["rows"]
    honest = rows[hostile.HONEST]
    assert (float(honest["total"]), honest["status"], honest["flags"]) == (17.0, "ok", ""), honest
    assert len(rows) == len(hostile.ATTACKS) + 2, sorted(rows)
    link = rows["symlink.ipynb"]
    assert (link["status"], float(link["total"])) == ("not_regular_file", 0.0)
    assert not (batch["out"] / "results.json").exists()
    results = list((batch["out"] / "results").glob("*.json"))
    assert len(results) == len(rows) and all(json.loads(p.read_text())["submission"] for p in results)


def test_nothing_outside_the_sandboxes_changed_and_no_process_survives(batch: dict) -> None:
    assert not batch["changed"], "a kernel changed the repository or a file outside its sandbox"
    assert batch["canary"] == "untouched"
    assert batch["survivors"] == []


def test_kernels_cannot_read_the_grader_and_messages_are_capped(batch: dict, capfd: pytest.CaptureFixture[str]) -> None:
    out: Path = batch["out"]
    document = (out / "gradebook.json").read_text()
    assert hostile.SECRET not in document
    feedback = {p.name: p.read_text() for p in (out / "feedback").glob("*.md")}
    assert "hardest segment: expected 'student', found 'clean'" in feedback["read-grader.ipynb.md"]
    assert "INJECTED-INTO-TERMINAL" not in capfd.readouterr().err
    huge = feedback["huge-error.ipynb.md"]
    assert "[cut:" in huge and len(huge) < 20_000
    assert len(document) < 2_000_000
    with (out / "gradebook.csv").open() as handle:
        names = [row[0] for row in csv.reader(handle)]
    assert "'=HYPERLINK(\"evil.example\").ipynb" in names and not any(name.startswith("=") for name in names)


def test_the_hanging_attacks_were_stopped_after_their_short_timeout(batch: dict) -> None:
    """Both ended in a timeout (their rows say so); the loop's exercise cell names how long it got."""
    assert HANGS == {"patch-builtins.ipynb", "ignore-sigint.ipynb"}
    assert {batch["rows"][name]["status"] for name in HANGS} == {"timeout"}
    feedback = (batch["out"] / "feedback" / "ignore-sigint.ipynb.md").read_text()
    assert f"stopped with: `timed out after {HANG_TIMEOUT:g} s" in feedback
