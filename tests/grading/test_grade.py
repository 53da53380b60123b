"""The grader: every lab's solution scores 100 % and its student notebook 0; a corpus of
broken, partial and hostile submissions gets exactly its expected scores and statuses; runs
are deterministic across -j 1 and -j 2."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scripts.grading.grade import GradingError, collect, grade, manifest_for
from tests.grading.corpus import CASES, FULL, Case, write_private

REPO = Path(__file__).resolve().parents[2]
CORPUS_TIMEOUT = 30.0  # seconds per cell: far above any Lab 00 cell even on a loaded machine


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "gradebook.csv").open() as handle:
        return {row["submission"]: row for row in csv.DictReader(handle)}


#: The infinite loop is graded with its own, short timeout: every other cell of that notebook is
#: the reference solution's (a few seconds each with a warm kernel), and the loop is stopped after
#: this long instead of after CORPUS_TIMEOUT.
LOOP_CASE, LOOP_TIMEOUT = "infinite-loop.ipynb", 15.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The corpus graded into one folder: the loop case in its own batch (short timeout) beside the
    rest, then one resumed run that finds every result and writes the gradebook of all of them."""
    folder = tmp_path_factory.mktemp("corpus")
    paths = {case.name: case.build(folder) for case in CASES}
    out, loop_out = tmp_path_factory.mktemp("graded"), tmp_path_factory.mktemp("graded-loop")
    private = write_private(folder / "private")
    others = [path for name, path in paths.items() if name != LOOP_CASE]
    with ThreadPoolExecutor(max_workers=1) as pool:
        loop = pool.submit(grade, "00", [paths[LOOP_CASE]], loop_out, jobs=1, timeout=LOOP_TIMEOUT, private=private)
        grade("00", others, out, jobs=2, timeout=CORPUS_TIMEOUT, private=private)
        loop.result()
    shutil.copytree(loop_out / "results", out / "results", dirs_exist_ok=True)
    rows = grade("00", list(paths.values()), out, jobs=2, timeout=CORPUS_TIMEOUT, private=private, resume=True)
    assert len(rows) == len(CASES)
    return folder, out


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_gets_exactly_its_expected_scores(corpus: tuple[Path, Path], case: Case) -> None:
    _, out = corpus
    manifest = json.loads(manifest_for("00").read_text())
    row = _rows(out)[case.name]
    expected = case.scores or {exercise: 0 for exercise in manifest["exercises"]}
    found = {exercise: float(row[exercise]) for exercise in manifest["exercises"]}
    assert found == {k: float(v) for k, v in expected.items()}, (case.name, row)
    assert float(row["total"]) == sum(expected.values())
    assert float(row["max"]) == manifest["max_points"] + 1  # plus the held-out check
    assert row["status"] == case.status
    assert tuple(sorted(filter(None, row["flags"].split(";")))) == tuple(sorted(case.flags))


@pytest.mark.slow
def test_gradebook_json_and_feedback_explain_the_scores(corpus: tuple[Path, Path]) -> None:
    _, out = corpus
    document = json.loads((out / "gradebook.json").read_text())
    assert {entry["submission"] for entry in document["submissions"]} == {case.name for case in CASES}
    wrong = next(entry for entry in document["submissions"] if entry["submission"] == "wrong.ipynb")
    check = next(c for c in wrong["checks"] if c["exercise"] == "00.1")
    assert check["earned"] == 1 and check["possible"] == 3
    messages = [record["message"] for record in check["checks"]]
    assert any("expected 'student'" in message and "found 'consumer'" in message for message in messages)
    feedback = (out / "feedback" / "wrong.ipynb.md").read_text()
    wrong_case = next(case for case in CASES if case.name == "wrong.ipynb")
    total = f"**{sum(wrong_case.scores.values()):g} / {sum(FULL.values()):g} points**"  # 10 / 18: 00.4 has a held-out point
    assert "✗ hardest segment: expected 'student'" in feedback and total in feedback, total
    assert "held-out check `00.4-h1`: passed (1/1)" in feedback
    assert "client.get_model_version_by_alias" not in feedback, "held-out sources must not leak"
    partial = (out / "feedback" / "partial.ipynb.md").read_text()
    assert "held-out check `00.4-h1`: failed (0/1) — an alias named champion must exist" in partial
    loop = (out / "feedback" / "infinite-loop.ipynb.md").read_text()
    assert "Status: **timeout**" in loop and f"timed out after {LOOP_TIMEOUT:g} s" in loop
    assert "a locked cell" in (out / "feedback" / "tampered.ipynb.md").read_text().lower()
    by_name = {entry["submission"]: entry for entry in document["submissions"]}
    restored = next(c for c in by_name["deleted-check.ipynb"]["checks"] if c["cell"] == "ex2-check")
    assert restored["checks"], "the restored check cell must have run and reported"
    suppressed = by_name["suppressed-traceback.ipynb"]["checks"]
    assert suppressed and all(c["outcome"] == "error" for c in suppressed), "suppressed tracebacks still fail"
    corrupted = (out / "feedback" / "corrupted.ipynb.md").read_text()
    assert "**invalid_json**" in corrupted and "Nothing was run" in corrupted


@pytest.mark.slow
def test_class_report_links_every_feedback_file_and_names_the_hardest_checks(corpus: tuple[Path, Path]) -> None:
    import html
    import re
    from urllib.parse import unquote

    _, out = corpus
    text = (out / "report.html").read_text()
    assert not list(out.glob(".report.html.*")), "written atomically: no temporary file left"
    links = re.findall(r'href="([^"]+)"', text)
    assert len(links) == len(CASES) and all((out / unquote(html.unescape(link))).is_file() for link in links)
    for case in CASES:
        assert html.escape(case.name) in text, case.name
    assert "timeout" in text and "tampered" in text and "held-out" not in text.split("<h2>Checks")[0]
    table = text.split("<h2>Checks, most failed first</h2>")[1].split("</table>")[0]
    first = re.findall(r"<tr><td><code>.*?</tr>", table)[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", first)
    assert "low" in first and cells[-1].strip(), f"the most failed check comes first, with its hint: {first}"


@pytest.mark.slow
def test_two_runs_give_identical_gradebooks_with_j1_and_j2(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    folder, first = corpus
    subset = [folder / "partial.ipynb", folder / "corrupted.ipynb"]
    grade("00", subset, tmp_path, jobs=1, timeout=CORPUS_TIMEOUT, private=folder / "private")
    again = _rows(tmp_path)
    before = _rows(first)
    for name in again:
        assert again[name] == before[name]

    def by_name(path: Path) -> dict[str, object]:
        return {e["submission"]: e for e in json.loads(path.read_text())["submissions"]}

    a, b = by_name(tmp_path / "gradebook.json"), by_name(first / "gradebook.json")
    assert all(a[name] == b[name] for name in a)


def test_bad_invocations_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GradingError, match="no single lab matches '42'; known labs"):
        manifest_for("42")
    with pytest.raises(GradingError, match="does not exist"):
        collect([tmp_path / "missing.ipynb"])
    with pytest.raises(GradingError, match="no submissions found"):
        collect([tmp_path])
    with pytest.raises(GradingError, match="is not a folder"):
        grade("00", [tmp_path], tmp_path / "o", private=tmp_path / "nope")
    (tmp_path / "private").mkdir()
    with pytest.raises(GradingError, match="no held-out checks for lab 00"):
        grade("00", [tmp_path], tmp_path / "o", private=tmp_path / "private")
    done = subprocess.run(
        [sys.executable, "-m", "scripts.grading", "grade", "--lab", "42", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert done.returncode == 1 and done.stderr.startswith("error: no single lab matches") and "Traceback" not in done.stderr


def test_names_are_unique_and_readable(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "lab.ipynb").write_text("{}")
    (tmp_path / "lab.ipynb").write_text("{}")
    names = [s.name for s in collect([tmp_path / "a", tmp_path / "b", tmp_path / "lab.ipynb", tmp_path / "lab.ipynb"])]
    assert names == ["a/lab.ipynb", "b/lab.ipynb", "lab.ipynb", "lab.ipynb#2"]


def test_kernels_get_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.grading.sandbox import environment

    monkeypatch.setenv("GRADER_API_TOKEN", "s3cr3t")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    env = environment()
    assert "s3cr3t" not in env.values() and "nope" not in env.values()
    assert not any(key.startswith(("GRADER_", "AWS_", "MLFLOW_TRACKING", "PYTHONPATH")) for key in env)
    assert env["HOME"].startswith("/tmp"), "kernels get a throw-away HOME in their private /tmp"
    assert env["PYTHONHASHSEED"] == "0" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"


@pytest.mark.slow
def test_a_dead_zygote_falls_back_to_a_fresh_runner(
    corpus: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grader's zygote has died: each submission runs in a fresh runner and sandbox instead,
    says so in its log, and scores exactly what the warm run scored."""
    from scripts.grading import grade as grading
    from scripts.grading import sandbox
    from scripts.grading.zygote import Zygote

    folder, first = corpus
    dead = Zygote(sandbox.environment({"HOME": str(tmp_path), "TMPDIR": str(tmp_path)}), tmp_path / "zygote.log")
    dead.process.kill()
    dead.close()
    monkeypatch.setattr(grading, "shared_zygote", lambda: dead)
    out = tmp_path / "out"
    grade("00", [folder / "partial.ipynb"], out, jobs=1, timeout=CORPUS_TIMEOUT, private=folder / "private")
    assert _rows(out)["partial.ipynb"] == _rows(first)["partial.ipynb"]
    log = next((out / "logs").glob("partial.ipynb*.log")).read_text()
    assert "note: no warm runner" in log and "starting a fresh one" in log


def test_the_migrated_cache_is_made_once_per_process_then_copied(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh interpreter migrates the sandboxes' template database once; later grading runs copy it."""
    from scripts.grading import session

    monkeypatch.setattr(session, "_prepared", None)
    started: list[list[str]] = []
    real_run = subprocess.run

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(list(args[0]))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(session.subprocess, "run", counting)
    with ThreadPoolExecutor(max_workers=2) as pool:  # two batches graded at once, as the hostile test does
        first, other = pool.map(session.prepare_cache, [tmp_path / "first", tmp_path / "other"])
    assert first is not None and other is not None
    assert len(started) == 1, "the first calls, even at once, make the database in one fresh interpreter"
    template = {path.name: path.read_bytes() for path in first.iterdir()}
    assert any(name.endswith("-empty.db") for name in template), template.keys()

    assert {path.name: path.read_bytes() for path in other.iterdir()} == template
    shutil.rmtree(tmp_path / "first")  # the copies come from the grader's private copy, not an output folder
    for name in ("second", "third"):
        again = session.prepare_cache(tmp_path / name)
        assert again == tmp_path / name / "mlops-labs"
        assert {path.name: path.read_bytes() for path in again.iterdir()} == template
    assert len(started) == 1, "later calls start no interpreter"


def test_check_prints_the_students_score_and_feedback_and_writes_no_class_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make check LAB=00` (``python -m scripts.grading check``) on a notebook that is rejected before
    it runs: the score, the status and the reason, then the feedback; a check of one notebook has no
    class, so it draws no class report (matplotlib alone is about a second)."""
    from scripts.grading import cli, report

    monkeypatch.setattr(report, "write", lambda *a, **k: pytest.fail("check wrote a class report"))
    notebook = tmp_path / "00-first-model.ipynb"
    notebook.write_text("{")
    assert cli.main(["check", str(notebook)]) == 0
    printed = capsys.readouterr().out
    maximum = sum(entry["points"] for entry in json.loads(manifest_for("00").read_text())["exercises"].values())
    assert f"00-first-model.ipynb: 0 / {maximum:g} points  (status: invalid_json)" in printed
    assert "the file is not valid JSON" in printed and "\nDetails:\n" in printed
