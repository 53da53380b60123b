"""Grade a batch of submitted notebooks into a gradebook (and one student's notebook for ``check``).

``grade(lab, submissions, out)``:

1. collects the submissions; a symlink or other non-regular file, an empty file, bad JSON, a
   non-notebook or an old nbformat gets a row with that status and 0 points (never aborts);
2. plans each notebook (:mod:`.plan`): its own cells, the lab's canonical locked cells, and
   the answers to export after each check;
3. runs it in its own sandbox with a fresh workspace (:mod:`.session`, :mod:`.sandbox`),
   ``-j`` at a time, then reads the workspace's registry in a fresh process;
4. judges the exported answers and facts against the trusted key (:mod:`.judge`) and writes
   ``OUT/results/<slug>.json`` at once, atomically (:mod:`.results`);
5. rebuilds ``gradebook.csv``, ``gradebook.json``, ``feedback/`` and the class report
   ``report.html`` (:mod:`.report`) from all result files.

``resume=True`` keeps every result whose file and lab are unchanged and grades the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import judge, plan, report, results, sandbox, session
from .assign import MANIFESTS
from .results import Row, cap
from .zygote import Zygote
from .zygote import shared as shared_zygote

DEFAULT_TIMEOUT = 120.0
MAX_NOTEBOOK_BYTES = 64 * 1024**2  # a lab notebook with outputs is a few MB


class GradingError(Exception):
    """The grading run itself cannot start (unknown lab, no submissions, bad options)."""


@dataclass
class Submission:
    """One file to grade and what the pre-check found."""

    name: str
    path: Path
    status: str = "pending"
    detail: str = ""
    cells: list[Any] | None = None
    key: str = ""


def manifest_for(lab: str) -> Path:
    """The manifest of lab ``lab`` (``"00"`` or a notebook stem such as ``"00-first-model"``)."""
    candidates = [p for p in MANIFESTS.glob("*.json") if not p.name.endswith(".expected.json")]
    matches = [p for p in candidates if p.stem == lab] or [p for p in candidates if p.stem.startswith(f"{lab}-")]
    if len(matches) != 1:
        known = sorted(path.stem for path in candidates)
        raise GradingError(f"no single lab matches {lab!r}; known labs: {known}. Run `make labs` if one is missing.")
    return matches[0]


def expected_for(manifest_path: Path) -> dict[str, Any]:
    """The answer key recorded from the reference solution (``<lab>.expected.json``)."""
    path = manifest_path.with_name(f"{manifest_path.stem}.expected.json")
    if not path.is_file():
        raise GradingError(
            f"no recorded answer key {path}; run `python -m scripts.grading record {manifest_path.stem[:2]}`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def collect(paths: list[str | Path]) -> list[Submission]:
    """Expand files and folders into submissions with unique, readable names (symlinks are not followed)."""
    found: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not path.is_symlink():
            for notebook in sorted(path.rglob("*.ipynb")):
                if ".ipynb_checkpoints" not in notebook.parts:
                    found.append((f"{path.name}/{notebook.relative_to(path).as_posix()}", notebook))
        elif path.exists() or path.is_symlink():
            found.append((path.name, path))
        else:
            raise GradingError(f"submission {path} does not exist")
    if not found:
        raise GradingError("no submissions found (give .ipynb files or folders that contain them)")
    submissions, seen = [], set()
    for name, path in found:
        unique, counter = name, 2
        while unique in seen:
            unique, counter = f"{name}#{counter}", counter + 1
        seen.add(unique)
        submissions.append(Submission(unique, path))
    return submissions


def precheck(submission: Submission) -> None:
    """Set ``status`` to ``ready`` (with the parsed cells) or to why the file cannot be graded."""
    info = submission.path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        submission.status, submission.detail = (
            "not_regular_file",
            f"{submission.path.name} is {kind}; submit the notebook file itself",
        )
        return
    if submission.path.suffix != ".ipynb":
        submission.status, submission.detail = "not_a_notebook", f"{submission.path.name} is not an .ipynb file"
        return
    if info.st_size > MAX_NOTEBOOK_BYTES:
        submission.status = "too_large"
        submission.detail = f"the file has {info.st_size / 1024**2:.0f} MB; clear the outputs (Edit → Clear All Outputs) and submit again"
        return
    raw = submission.path.read_bytes()
    submission.key = hashlib.sha256(raw).hexdigest()
    if not raw.strip():
        submission.status, submission.detail = "empty", "the file is empty"
        return
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        submission.status, submission.detail = "invalid_json", f"the file is not valid JSON ({cap(str(exc), 200)})"
        return
    if not isinstance(document, dict):
        submission.status, submission.detail = "not_a_notebook", "the JSON is not a notebook"
        return
    version = document.get("nbformat")
    if isinstance(version, int) and version < 4:
        submission.status = "old_nbformat"
        submission.detail = f"nbformat {version} is too old; open and save it in a current Jupyter"
        return
    if version != 4 or not isinstance(document.get("cells"), list):
        submission.status, submission.detail = "not_a_notebook", "the JSON has no nbformat 4 list of cells"
        return
    submission.cells = document["cells"]
    submission.status = "ready"


def slug(name: str) -> str:
    """A file name for a submission: readable and unique (a hash of the full name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] + "-" + hashlib.sha256(name.encode()).hexdigest()[:10]


def private_checks(folder: str | Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """An instructor's held-out judgments for this lab, from ``FOLDER/<notebook stem>.hidden.json``.

    Each is a judgment (``answer`` or ``fact``, with ``expect`` or ``"op": "exists"``) plus
    ``id``, ``exercise``, ``points`` and ``after`` (the cell after which its answer is exported).
    They stay in the grader's process: no kernel ever sees them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GradingError(f"--private {folder} is not a folder")
    path = folder / f"{Path(manifest['notebook']).stem}.hidden.json"
    if not path.is_file():
        raise GradingError(f"no held-out checks for lab {manifest['lab']}: expected {path}")
    try:
        checks = json.loads(path.read_text(encoding="utf-8"))["checks"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise GradingError(f"{path} is not a held-out check file ({exc}); see the instructors' page") from None
    for check in checks:
        missing = {"id", "exercise", "points", "after"} - set(check)
        if missing or not ({"answer", "fact"} & set(check)) or not ({"expect", "op"} & set(check)):
            raise GradingError(
                f"{path}: held-out check {check.get('id')!r} needs id, exercise, points, after, "
                "answer or fact, and expect or op (missing {sorted(missing)})"
            )
        if check["exercise"] not in manifest["exercises"]:
            raise GradingError(f"{path}: held-out check {check['id']!r} names unknown exercise {check['exercise']!r}")
    return [{**check, "held_out": True} for check in checks]


def score(
    manifest: dict[str, Any],
    name: str,
    outcome: session.Outcome,
    facts_by_cell: dict[str, Any],
    key: dict[str, Any],
    held_out: list[dict[str, Any]],
    flags: set[str],
) -> Row:
    """Judge one submission's answers and facts into a gradebook row."""
    exercises = manifest["exercises"]
    maximum = float(sum(entry["points"] for entry in exercises.values()))
    scores = {exercise: 0.0 for exercise in exercises}
    checks: list[dict[str, Any]] = []
    recorded = key.get("values", {})
    for cell_id, entries in plan.judgments(manifest, held_out).items():
        by_kind: dict[bool, list[judge.Verdict]] = {}
        facts = facts_by_cell.get(cell_id, {})  # the registry right after this cell
        for entry in entries:
            if "expect" in entry:
                expected = entry["expect"]
            elif "expect_fact" in entry:  # relative to this submission's own registry
                expected = judge.lookup(facts, list(entry["expect_fact"]))
            else:
                expected = recorded.get(entry["id"], judge.MISSING)
            verdict = judge.judge(entry, outcome.answers, facts, expected)
            if entry.get("held_out"):
                verdict = judge.Verdict(
                    verdict.id,
                    verdict.passed,
                    verdict.points,
                    verdict.earned,
                    f"held-out check `{entry['id']}`" + ("" if verdict.passed else f" — {entry.get('hint', '')}"),
                )
            by_kind.setdefault(bool(entry.get("held_out")), []).append(verdict)
            scores[entry["exercise"]] += verdict.earned
        cell = outcome.cells.get(cell_id, {"status": "not run", "error": None})
        for held, verdicts in by_kind.items():
            checks.append(
                {
                    "cell": cell_id,
                    "exercise": entries[0]["exercise"],
                    "kind": "held-out" if held else "public",
                    "earned": sum(v.earned for v in verdicts),
                    "possible": sum(v.points for v in verdicts),
                    "outcome": cell["status"],
                    "checks": [
                        {
                            "id": v.id,
                            "passed": v.passed,
                            "earned": v.earned,
                            "points": v.points,
                            "message": cap(v.message),
                        }
                        for v in verdicts
                    ],
                }
            )
    scores = {ex: round(min(value, float(exercises[ex]["points"])), 3) for ex, value in scores.items()}
    errors: dict[str, str] = {}
    exercise_of = {cell["id"]: cell.get("exercise") for cell in manifest["cells"]}
    for cell_id, cell in outcome.cells.items():
        exercise = exercise_of.get(cell_id)
        if exercise and cell["status"] != "ok" and exercise not in errors and cell.get("error"):
            errors[exercise] = cap(cell["error"], 1000)
    flags = set(flags) | set(outcome.events)
    status, detail = "ok", ""
    if any(event.startswith("timeout@") for event in outcome.events):
        status = "timeout"
    elif any(event.startswith("kernel_died@") for event in outcome.events):
        status = "kernel_died"
    if outcome.cells and not outcome.finished and status == "ok":
        status, detail = (
            "incomplete",
            "the run ended before the last cell (a cell stopped the kernel's supervisor); later exercises score 0",
        )
    if not outcome.cells:
        status, detail = (
            "error",
            "no cell could be run: "
            + cap(
                outcome.stderr.strip().splitlines()[-1] if outcome.stderr.strip() else "the kernel did not start", 500
            ),
        )
    return Row(name, scores, round(sum(scores.values()), 3), maximum, status, sorted(flags), checks, errors, detail)


def feedback(row: Row, manifest: dict[str, Any]) -> str:
    """Markdown feedback for one student: scores, the grader's judgments, first errors, notices."""
    lines = [f"# Feedback: {row.submission}", "", f"Lab {manifest['lab']} — **{row.total:g} / {row.max:g} points**", ""]
    if row.status != "ok":
        lines += [f"> Status: **{row.status}**. {row.detail}".rstrip(), ""]
    if "tampered" in row.flags:
        lines += ["> A locked cell (setup or check) was edited or deleted; the original was restored and used.", ""]
    if "matched_by_content" in row.flags:
        lines += ["> Your notebook has no cell ids (an older Jupyter saved it); its cells were matched by content.", ""]
    if "unsandboxed" in row.flags:
        lines += ["> Graded without the sandbox (--no-sandbox).", ""]
    if not row.checks and row.status not in ("ok", "timeout", "kernel_died"):
        return (
            "\n".join(lines + ["Nothing was run, so every exercise scores 0. Fix the file and submit it again."]) + "\n"
        )
    lines += ["| exercise | points |", "|---|---|"]
    lines += [f"| {ex} | {row.scores[ex]:g} / {manifest['exercises'][ex]['points']:g} |" for ex in row.scores]
    for exercise in row.scores:
        lines += ["", f"## Exercise {exercise}"]
        if exercise in row.errors:
            lines.append(f"- Your exercise cell stopped with: `{cap(row.errors[exercise], 1000)}`")
        for check in (c for c in row.checks if c["exercise"] == exercise):
            if check["kind"] == "held-out":
                for record in check["checks"]:
                    verdict = "passed" if record["passed"] else "failed"
                    lines.append(
                        f"- {record['message'].split(' — ')[0]}: {verdict} ({record['earned']:g}/{record['points']:g})"
                        + ("" if record["passed"] else " — " + record["message"].split(" — ", 1)[-1])
                    )
                continue
            for record in check["checks"]:
                mark = "✓" if record["passed"] else "✗"
                lines.append(f"- {mark} {record['message']} ({record['earned']:g}/{record['points']:g})")
    return "\n".join(lines) + "\n"


def database(manifest: dict[str, Any]) -> str:
    """The lab's workspace database, relative to the notebook's folder (``open_workspace(<stem>)``)."""
    return f".mlops/{Path(manifest['notebook']).stem}/mlflow.db"


def _grade_one(
    submission: Submission,
    slug_: str,
    manifest: dict[str, Any],
    key: dict[str, Any],
    held_out: list[dict[str, Any]],
    out: Path,
    *,
    timeout: float,
    sandboxed: bool,
    limits: sandbox.Limits,
    cache: Path | None,
    run_key: str,
    zygote: Zygote | None = None,
) -> Row:
    flags = set() if sandboxed else {"unsandboxed"}
    if submission.status != "ready":
        maximum = float(sum(entry["points"] for entry in manifest["exercises"].values()))
        row = Row(
            submission.name,
            {ex: 0.0 for ex in manifest["exercises"]},
            0.0,
            maximum,
            submission.status,
            sorted(flags),
            detail=submission.detail,
        )
    else:
        assert submission.cells is not None
        steps = plan.build(submission.cells, manifest, held_out)
        workdir = out / "work" / slug_
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        snapshots = out / "work" / f"{slug_}.facts"
        try:
            outcome = session.run(
                steps,
                workdir,
                out / "logs" / f"{slug_}.log",
                timeout=timeout,
                sandboxed=sandboxed,
                limits=limits,
                cache=cache,
                database=database(manifest),
                zygote=zygote,
            )
            facts = session.probe(outcome.snapshots, snapshots, sandboxed=sandboxed, limits=limits)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(snapshots, ignore_errors=True)
        row = score(manifest, submission.name, outcome, facts, key, held_out, steps.flags | flags)
    row.key = run_key
    results.save(out / "results", slug_, row)
    return row


def grade(
    lab: str,
    paths: list[str | Path],
    out: str | Path,
    *,
    jobs: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    private: str | Path | None = None,
    sandboxed: bool = True,
    resume: bool = False,
    limits: sandbox.Limits = sandbox.Limits(),
    warm: bool | None = None,
    class_report: bool = True,
) -> list[Row]:
    """Grade ``paths`` against lab ``lab``; write results, the gradebook and feedback into ``out``.

    ``class_report=False`` leaves out ``report.html`` (a student's ``check`` of one notebook has
    no class to report on; drawing its histogram imports matplotlib, about a second).

    ``warm`` (default: unless ``MLOPS_COLD=1``): sandboxed submissions run forked from this
    process's zygote (:mod:`scripts.grading.zygote`), each still in its own sandbox, instead of
    starting new interpreters inside every sandbox.
    """
    if jobs < 1:
        raise GradingError("-j must be at least 1")
    manifest_path = manifest_for(lab)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    key = expected_for(manifest_path)
    held_out = private_checks(private, manifest) if private is not None else []
    for check in held_out:
        manifest["exercises"][check["exercise"]]["points"] += float(check["points"])
    if sandboxed:
        try:
            sandbox.check_works()
        except sandbox.SandboxUnavailable as exc:
            raise GradingError(str(exc)) from None
    submissions = collect(list(paths))
    out = Path(out).resolve()  # sandboxes bind folders by absolute path
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    lab_key = hashlib.sha256(
        (
            manifest_path.read_text()
            + json.dumps(key, sort_keys=True)
            + json.dumps(held_out, sort_keys=True)
            + str(sandboxed)
        ).encode()
    ).hexdigest()
    done = results.load(out / "results") if resume else {}
    if not resume and (out / "results").exists():
        shutil.rmtree(out / "results")
    todo = []
    for submission in submissions:
        precheck(submission)
        name = slug(submission.name)
        run_key = f"{submission.key}:{lab_key}"
        if name in done and done[name].key == run_key:
            continue
        todo.append((submission, name, run_key))
    ready = any(s.status == "ready" for s, _, _ in todo)
    if warm is None:
        warm = os.environ.get("MLOPS_COLD", "") in ("", "0")
    zygote = shared_zygote() if ready and sandboxed and warm else None  # starts importing now
    cache = session.prepare_cache(out / "cache") if ready else None
    _grade_all(todo, jobs, manifest, key, held_out, out, timeout, sandboxed, limits, cache, zygote)
    return rebuild(out, manifest, [slug(s.name) for s in submissions], class_report=class_report)


def _grade_all(
    todo: list[tuple[Submission, str, str]],
    jobs: int,
    manifest: dict[str, Any],
    key: dict[str, Any],
    held_out: list[dict[str, Any]],
    out: Path,
    timeout: float,
    sandboxed: bool,
    limits: sandbox.Limits,
    cache: Path | None,
    zygote: Zygote | None,
) -> None:
    finished = [0]

    def one(item: tuple[Submission, str, str]) -> Row:
        submission, name, run_key = item
        row = _grade_one(
            submission,
            name,
            manifest,
            key,
            held_out,
            out,
            timeout=timeout,
            sandboxed=sandboxed,
            limits=limits,
            cache=cache,
            run_key=run_key,
            zygote=zygote,
        )
        finished[0] += 1
        sys.stderr.write(f"\rgraded {finished[0]}/{len(todo)}")
        sys.stderr.flush()
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, todo))
    if todo:
        sys.stderr.write("\n")


def rebuild(
    out: Path, manifest: dict[str, Any], slugs: list[str] | None = None, *, class_report: bool = True
) -> list[Row]:
    """Gradebook, feedback and class report from the result files (all of them, or those of ``slugs``)."""
    stored = results.load(out / "results")
    rows = sorted(
        (row for name, row in stored.items() if slugs is None or name in slugs), key=lambda row: row.submission
    )
    results.gradebook(out, rows, manifest["exercises"], manifest["lab"])
    folder = out / "feedback"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for row in rows:
        results.write_atomic(folder / report.feedback_name(row.submission), feedback(row, manifest))
    if class_report:
        report.write(out, rows, manifest)
    return rows
