"""Grade a batch of submitted notebooks into a gradebook (and one student's notebook for ``check``).

``grade(lab, submissions, out)``:

1. reads every submission once; a file that is empty, not JSON, not a notebook or of an old
   nbformat gets a gradebook row with that status and 0 points (the batch never aborts);
2. copies only the notebook into a fresh folder per submission (a ``conftest.py``,
   ``pytest.ini``, ``mlflow.py`` or ``sitecustomize.py`` shipped beside it is left behind);
3. runs pytest with nbval and the grading plugin (``-p scripts.grading.plugin``) on all of them,
   in a minimal environment (no secrets of the grader reach the kernels), ``-j`` in parallel;
4. writes ``gradebook.csv``, ``gradebook.json`` and ``feedback/<submission>.md``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .assign import MANIFESTS, REPO

DEFAULT_TIMEOUT = 120.0


class GradingError(Exception):
    """The grading run itself cannot start (unknown lab, no submissions, bad options)."""


@dataclass
class Submission:
    """One file to grade and what the pre-check found."""

    name: str
    path: Path
    status: str = "pending"
    detail: str = ""
    workdir: Path | None = None


@dataclass
class Row:
    """One gradebook row."""

    submission: str
    scores: dict[str, float]
    total: float
    max: float
    status: str
    flags: list[str]
    checks: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    detail: str = ""


def manifest_for(lab: str) -> Path:
    """The manifest of lab ``lab`` (``"00"`` or a notebook stem such as ``"00-first-model"``)."""
    matches = sorted(MANIFESTS.glob(f"{lab}.json")) or sorted(MANIFESTS.glob(f"{lab}-*.json"))
    if len(matches) != 1:
        known = sorted(path.stem for path in MANIFESTS.glob("*.json"))
        raise GradingError(f"no single lab matches {lab!r}; known labs: {known}. Run `make labs` if one is missing.")
    return matches[0]


def collect(paths: list[str | Path]) -> list[Submission]:
    """Expand files and folders into submissions with unique, readable names."""
    found: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for notebook in sorted(path.rglob("*.ipynb")):
                if ".ipynb_checkpoints" not in notebook.parts:
                    found.append((f"{path.name}/{notebook.relative_to(path).as_posix()}", notebook))
        elif path.exists():
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
    """Set ``status`` to ``ready`` or to why the file cannot be graded."""
    if submission.path.suffix != ".ipynb":
        submission.status, submission.detail = "not_a_notebook", f"{submission.path.name} is not an .ipynb file"
        return
    raw = submission.path.read_bytes()
    if not raw.strip():
        submission.status, submission.detail = "empty", "the file is empty"
        return
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        submission.status, submission.detail = "invalid_json", f"the file is not valid JSON ({exc})"
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
    submission.status = "ready"


def _slug(index: int, name: str) -> str:
    return f"{index:03d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60]


def _environment(out: Path) -> dict[str, str]:
    """What the grading pytest and its kernels see: nothing of the grader's own secrets."""
    home = out / "home"
    home.mkdir(parents=True, exist_ok=True)
    venv_bin = str(Path(sys.executable).parent)
    keep = {"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "LANG": os.environ.get("LANG", "C.UTF-8")}
    if "OPENBLAS_CORETYPE" in os.environ:  # machine-specific BLAS fixes, not secrets
        keep["OPENBLAS_CORETYPE"] = os.environ["OPENBLAS_CORETYPE"]
    if "OPENBLAS_L2_SIZE" in os.environ:
        keep["OPENBLAS_L2_SIZE"] = os.environ["OPENBLAS_L2_SIZE"]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return {
        **keep,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(cache),  # shares the migrated empty MLflow database template
        "PYTHONPATH": str(REPO),
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        "TMPDIR": str(home),
    }


def run_pytest(
    manifest: Path, notebooks: list[Path], out: Path, *, jobs: int, timeout: float, private: Path | None
) -> dict[str, Any]:
    """Run nbval + the grading plugin over prepared notebooks; return the plugin's results."""
    results = out / "results.json"
    ini = out / "grading.ini"
    ini.write_text("[pytest]\n# written by scripts.grading.grade; keeps submissions from supplying a config\n")
    command = [
        sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(out / "work"),
        "-p", "scripts.grading.plugin", "-p", "no:cacheprovider", "--noconftest", "-q", "--no-header",
        "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout", f"{timeout:g}",
        "--grading-manifest", str(manifest), "--grading-results", str(results),
        "--grading-total", str(len(notebooks)),
    ]
    if private is not None:
        command += ["--grading-private", str(private)]
    if jobs > 1:
        command += ["-n", str(jobs), "--dist", "loadfile"]
    command += [str(path) for path in notebooks]
    with (out / "pytest.log").open("w", encoding="utf-8") as log:
        done = subprocess.run(command, cwd=out / "work", env=_environment(out), stdout=log, stderr=None, check=False)
    if done.returncode not in (0, 1) or not results.is_file():  # 0/1: cells passed/failed; else pytest broke
        raise GradingError(f"the grading run itself failed (pytest exit {done.returncode}); see {out / 'pytest.log'}")
    return json.loads(results.read_text(encoding="utf-8"))


def score(manifest: dict[str, Any], name: str, result: dict[str, Any] | None, status: str, detail: str = "") -> Row:
    """Turn one submission's item results into a gradebook row."""
    exercises = manifest["exercises"]
    maximum = float(sum(entry["points"] for entry in exercises.values()))
    scores = {exercise: 0.0 for exercise in exercises}
    if result is None:
        return Row(name, scores, 0.0, maximum, status, [], detail=detail)
    checks: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    events = list(result.get("events", []))
    for item in result["items"]:
        exercise = item.get("exercise")
        if item["role"] in ("lab-check", "lab-hidden") and exercise in scores:
            records = [r for r in item.get("records", []) if r.get("exercise") == exercise]
            earned = min(float(item["points"]), sum(float(r["earned"]) for r in records))
            scores[exercise] += earned
            checks.append(
                {
                    "cell": item["cell_id"], "exercise": exercise, "kind": "held-out" if item["role"] == "lab-hidden" else "public",
                    "earned": earned, "possible": float(item["points"]), "outcome": item["outcome"],
                    "duration": item["duration"], "hint": item.get("hint", ""),
                    "checks": [
                        {"id": r["id"], "passed": r["passed"], "earned": r["earned"], "points": r["points"], "message": r["message"]}
                        for r in records
                    ],
                    "error": None if records else item.get("error"),
                }
            )
        elif item["role"] == "exercise" and item.get("error") and exercise and exercise not in errors:
            errors[exercise] = item["error"]
    scores = {exercise: min(value, float(exercises[exercise]["points"])) for exercise, value in scores.items()}
    flags = set(result.get("flags", []))
    if any(event == "suppressed_error" for event in events):
        flags.add("suppressed_error")
    if any(event.startswith("timeout@") for event in events):
        status = "timeout"
        flags.update(event for event in events if event.startswith("timeout@"))
    elif any(event.startswith(("kernel_died", "kernel_restarted")) for event in events):
        status = "kernel_died"
        flags.update(event for event in events if event.startswith("kernel_died@"))
    if not result["items"] or all(item["outcome"] == "not run" for item in result["items"]):
        status, detail = "error", "no cell could be run"
    return Row(name, scores, round(sum(scores.values()), 3), maximum, status, sorted(flags), checks, errors, detail)


def feedback(row: Row, manifest: dict[str, Any]) -> str:
    """Markdown feedback for one student: scores, check messages, first errors, notices."""
    lines = [f"# Feedback: {row.submission}", "", f"Lab {manifest['lab']} — **{row.total:g} / {row.max:g} points**", ""]
    if row.status not in ("ok",):
        lines += [f"> Status: **{row.status}**. {row.detail}".rstrip(), ""]
    if "tampered" in row.flags:
        lines += ["> A locked cell (setup or check) was edited or deleted; the original was restored and used.", ""]
    if "suppressed_error" in row.flags:
        lines += ["> A cell raised an error whose traceback was suppressed; it counts as failed.", ""]
    if not row.checks and row.status not in ("ok", "timeout", "kernel_died"):
        return "\n".join(lines + ["Nothing was run, so every exercise scores 0. Fix the file and submit it again."]) + "\n"
    lines += ["| exercise | points |", "|---|---|"]
    lines += [f"| {ex} | {row.scores[ex]:g} / {manifest['exercises'][ex]['points']:g} |" for ex in row.scores]
    for exercise in row.scores:
        lines += ["", f"## Exercise {exercise}"]
        if exercise in row.errors:
            lines.append(f"- Your exercise cell stopped with: `{row.errors[exercise]}`")
        for check in (c for c in row.checks if c["exercise"] == exercise):
            if check["kind"] == "held-out":
                verdict = "passed" if check["earned"] == check["possible"] else "failed"
                hint = f" — {check['hint']}" if check["hint"] and verdict == "failed" else ""
                lines.append(f"- held-out check `{check['cell']}`: {verdict} ({check['earned']:g}/{check['possible']:g}){hint}")
                continue
            for record in check["checks"]:
                mark = "✓" if record["passed"] else "✗"
                lines.append(f"- {mark} {record['message']} ({record['earned']:g}/{record['points']:g})")
            if not check["checks"]:
                lines.append(f"- ✗ the checks could not run: {check['error'] or check['outcome']}")
    return "\n".join(lines) + "\n"


def private_checks(folder: str | Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """An instructor's held-out checks for this lab, from ``FOLDER/<notebook stem>.hidden.json``.

    Used both here (to count their points) and by the pytest plugin (to run them).
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
        missing = {"id", "exercise", "points", "after", "source"} - set(check)
        if missing:
            raise GradingError(f"{path}: held-out check {check.get('id')!r} lacks {sorted(missing)}")
        if check["exercise"] not in manifest["exercises"]:
            raise GradingError(f"{path}: held-out check {check['id']!r} names unknown exercise {check['exercise']!r}")
    return checks


def grade(
    lab: str,
    paths: list[str | Path],
    out: str | Path,
    *,
    jobs: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    private: str | Path | None = None,
) -> list[Row]:
    """Grade ``paths`` against lab ``lab``; write the gradebook and feedback into ``out``."""
    if jobs < 1:
        raise GradingError("-j must be at least 1")
    manifest_path = manifest_for(lab)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if private is not None:
        for check in private_checks(private, manifest):
            manifest["exercises"][check["exercise"]]["points"] += float(check["points"])
    submissions = collect(list(paths))
    out = Path(out)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    notebooks = []
    for index, submission in enumerate(submissions):
        precheck(submission)
        if submission.status == "ready":
            folder = work / _slug(index, submission.name)
            folder.mkdir()
            target = folder / manifest["notebook"]
            shutil.copyfile(submission.path, target)  # only the notebook: nothing shipped beside it
            submission.workdir = folder
            notebooks.append(target)
    results: dict[str, Any] = {}
    if notebooks:
        results = run_pytest(manifest_path, notebooks, out, jobs=jobs, timeout=timeout, private=Path(private) if private else None)
    rows = []
    for submission in submissions:
        if submission.status != "ready":
            rows.append(score(manifest, submission.name, None, submission.status, submission.detail))
            continue
        assert submission.workdir is not None
        result = results.get(submission.workdir.name)
        if result is None:
            rows.append(score(manifest, submission.name, None, "error", "the grader produced no result for it"))
        else:
            rows.append(score(manifest, submission.name, result, "ok"))
    rows.sort(key=lambda row: row.submission)
    write_gradebook(rows, manifest, out)
    return rows


def write_gradebook(rows: list[Row], manifest: dict[str, Any], out: Path) -> None:
    exercises = list(manifest["exercises"])
    with (out / "gradebook.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["submission", *exercises, "total", "max", "status", "flags"])
        for row in rows:
            writer.writerow([row.submission, *(f"{row.scores[e]:g}" for e in exercises), f"{row.total:g}", f"{row.max:g}", row.status, ";".join(row.flags)])
    document = {
        "lab": manifest["lab"],
        "notebook": manifest["notebook"],
        "exercises": {ex: entry["points"] for ex, entry in manifest["exercises"].items()},
        "submissions": [
            {"submission": r.submission, "scores": r.scores, "total": r.total, "max": r.max, "status": r.status,
             "flags": r.flags, "detail": r.detail, "errors": r.errors, "checks": r.checks}
            for r in rows
        ],
    }
    (out / "gradebook.json").write_text(json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    folder = out / "feedback"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for row in rows:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", row.submission)
        (folder / f"{name}.md").write_text(feedback(row, manifest), encoding="utf-8")
