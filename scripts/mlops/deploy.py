"""The deploy gate against a lab workspace: candidate files, workflow variants, runs and their record.

Lab 04 runs the repository's real workflow, ``.github/workflows/deploy-gate.yml``, with the
offline runner (:mod:`scripts.mlops.ci_local`) against the lab's own registry and release
index. This module is the glue a notebook needs and nothing more:

* :func:`run_gate` writes the candidate declaration, runs the workflow and returns a
  :class:`GateRun` (conclusion, every step's outcome, the pull-request comment, the release
  index lines the run added);
* :func:`workflow_with` splices a student's ``permissions``/``concurrency`` blocks and the
  promote step's ``if:`` into the real workflow, and :func:`lint` checks the result with the
  runner's own static checks, ``actionlint`` and ``zizmor --offline``;
* :func:`stale_baseline` makes a baseline whose evaluation-set hash no longer matches;
* :func:`write_manifest` records the lab's evidence (the clean and regressed candidates' runs,
  and the baseline's SHA-256 at each gate run) as ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MlopsError
from .files import write_atomic
from .workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "deploy-gate.yml"
MODEL = "churn-classifier"
HARDENING_KEYS = ("permissions", "concurrency")
_TOP_LEVEL_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*):")
_PROMOTE_IF = re.compile(r"^(?P<indent>\s+)if: needs\.gate\.result == 'success'\s*$")


def workflow_variables(ws: Workspace) -> dict[str, str]:
    """The repository variables (``vars.*``) that point the workflow at this workspace."""
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{ws.db.resolve()}",
        "MLOPS_RELEASES_DIR": str((ws.root / "releases").resolve()),
    }


def releases_dir(ws: Workspace) -> Path:
    """Where the workspace's release index (``tags.json``, ``index.jsonl``) lives."""
    return ws.root / "releases"


@dataclass
class GateRun:
    """One offline run of the deploy-gate workflow, as a reader of the Actions page sees it."""

    name: str
    conclusion: str
    exit_code: int
    steps: list[dict[str, Any]]
    comment: str
    summary: str
    new_index_lines: list[dict[str, Any]]
    baseline_sha256: str
    candidate: dict[str, Any]
    out: Path
    log: str = field(repr=False, default="")

    def step(self, prefix: str) -> dict[str, Any]:
        """The first step whose id is ``prefix`` or whose name starts with it."""
        for step in self.steps:
            if step["id"] == prefix or step["step"].startswith(prefix):
                return step
        raise KeyError(f"no step {prefix!r} in this run; steps: {[s['step'] for s in self.steps]}")

    def output(self, prefix: str) -> str:
        """What the step's command printed, with this checkout's and this run's folders shortened."""
        return str(self.step(prefix)["output"])

    def first_failure(self) -> str | None:
        """The name of the first step that failed, or None."""
        return next((step["step"] for step in self.steps if step["outcome"] == "failure"), None)

    def table(self) -> Any:
        """Every step with its job, outcome and exit code, as a DataFrame (what the Actions page lists)."""
        import pandas as pd

        return pd.DataFrame(self.steps).set_index(["job", "step"])[["outcome", "exit code"]]


def _shorten_paths(text: str, out: Path) -> str:
    """``text`` with the run's folder written ``<run>`` and the checkout's as a relative path,
    so that what a step printed reads (and compares) the same on every machine."""
    return text.replace(f"{out.resolve()}/", "<run>/").replace(f"{REPO}/", "")


def write_candidate(ws: Workspace, candidate: dict[str, Any], name: str = "candidate") -> Path:
    """Write ``deploy/<name>.json`` in the workspace, refused with the reason if it is malformed."""
    from .release import read_candidate

    if not isinstance(candidate, dict):
        raise MlopsError(
            f"the candidate must be a dict, not {type(candidate).__name__}",
            'write e.g. {"model": "churn-classifier", "version": 2, "semver": "v1.1.0"}',
        )
    path = ws.root / "deploy" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(candidate, indent=2) + "\n")
    try:
        read_candidate(path, MODEL)  # the same check stage 3 makes: fail here, with its message
    except MlopsError:
        path.unlink()
        raise
    return path


def sha256_file(path: str | Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_gate(
    ws: Workspace,
    candidate: dict[str, Any],
    *,
    name: str = "run",
    workflow: str | Path = WORKFLOW,
    baseline: str | Path | None = None,
) -> GateRun:
    """Run the deploy-gate workflow offline on ``candidate`` against this workspace's registry.

    The emulation folder is ``<workspace>/ci/<name>``; ``baseline`` replaces the workflow's
    ``BASELINE_FILE`` (default: the committed ``eval_baseline.json``). The runner's log is kept
    in :attr:`GateRun.log` (and ``log.txt``) rather than printed: it holds timings and paths.
    """
    from . import ci_local
    from .errors import EXIT_REFUSED, EXIT_UNUSABLE
    from .release import index_lines

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name):
        raise MlopsError(f"run name {name!r} is not a short lowercase name", "use e.g. 'clean' or 'regressed'")
    candidate_file = write_candidate(ws, candidate, name)
    baseline_file = Path(baseline) if baseline is not None else REPO / "eval_baseline.json"
    before = len(index_lines(releases_dir(ws)))
    stream = io.StringIO()
    out = ws.root / "ci" / name
    run = ci_local.run_workflow(
        workflow,
        repo=REPO,
        out=out,
        variables=workflow_variables(ws),
        env={"CANDIDATE_FILE": str(candidate_file.resolve()), "BASELINE_FILE": str(baseline_file.resolve())},
        stream=stream,
    )
    (out / "log.txt").write_text(stream.getvalue())
    lines = index_lines(releases_dir(ws))
    steps = [
        {
            "job": job_id,
            "step": step.name,
            "id": step.id,
            "outcome": step.outcome,
            "exit code": "-" if step.exit_code is None else step.exit_code,
            "output": _shorten_paths(step.output, out),
        }
        for job_id, job in run.jobs.items()
        for step in job.steps
    ]
    if run.conclusion == "success":
        code = 0
    else:
        refused = any(step.exit_code == EXIT_REFUSED for job in run.jobs.values() for step in job.steps)
        code = EXIT_REFUSED if refused else EXIT_UNUSABLE
    return GateRun(
        name=name,
        conclusion=run.conclusion,
        exit_code=code,
        steps=steps,
        comment=run.comment or "",
        summary="".join(job.summary for job in run.jobs.values()),
        new_index_lines=lines[before:],
        baseline_sha256=sha256_file(baseline_file),
        candidate=json.loads(candidate_file.read_text()),
        out=out,
        log=stream.getvalue(),
    )


# --------------------------------------------------------------------------------------
# Workflow variants (Lab 04's exercises)
# --------------------------------------------------------------------------------------


def _blocks(text: str) -> list[tuple[str | None, list[str]]]:
    """The workflow's lines grouped by top-level key (None: comments and blanks before the first)."""
    blocks: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in text.splitlines(keepends=True):
        match = _TOP_LEVEL_KEY.match(line)
        if match:
            blocks.append((match.group("key"), [line]))
        else:
            blocks[-1][1].append(line)
    return blocks


def top_level_keys(text: str) -> list[str]:
    """The top-level keys of a workflow's text, in file order."""
    return [key for key, _ in _blocks(text) if key is not None]


def workflow_without(text: str, *keys: str) -> str:
    """A workflow's text with the top-level blocks ``keys`` taken out (comments elsewhere kept)."""
    return "".join("".join(lines) for key, lines in _blocks(text) if key not in keys)


def workflow_without_hardening(text: str | None = None) -> str:
    """The real workflow with its top-level ``permissions`` and ``concurrency`` taken out."""
    return workflow_without(WORKFLOW.read_text() if text is None else text, *HARDENING_KEYS)


def workflow_with(hardening: str, promote_if: str | None = None, *, base: str | None = None) -> str:
    """The real workflow with ``hardening`` (top-level YAML) in place of its own ``permissions``
    and ``concurrency``, and ``promote_if`` (an expression) as the promote step's ``if:``.

    Refuses hardening text that sets anything but those two keys, so the rest of the workflow is
    the one the repository ships.
    """
    if not isinstance(hardening, str):
        raise MlopsError("the hardening must be YAML text (a string)", "write it between triple quotes")
    keys = [key for key, _ in _blocks(hardening) if key is not None]
    stray = sorted(set(keys) - set(HARDENING_KEYS))
    if stray or any(
        line.strip() and not line.startswith(("#", " ")) and not _TOP_LEVEL_KEY.match(line)
        for line in hardening.splitlines()
    ):
        raise MlopsError(
            f"the hardening may only set top-level {list(HARDENING_KEYS)}; found {stray or 'other lines'}",
            "write `permissions:` and `concurrency:` blocks, indented as in a workflow file",
        )
    blocks = _blocks(workflow_without_hardening(base))
    jobs_at = next(index for index, (key, _) in enumerate(blocks) if key == "jobs")
    body = hardening.strip("\n") + "\n\n"
    text = "".join("".join(lines) for _, lines in blocks[:jobs_at]) + body
    text += "".join("".join(lines) for _, lines in blocks[jobs_at:])
    if promote_if is not None:
        if not isinstance(promote_if, str) or "\n" in promote_if or not promote_if.strip():
            raise MlopsError("promote_if must be one line: a GitHub expression", "e.g. needs.gate.result == 'x'")
        lines = text.splitlines(keepends=True)
        at = next((i for i, line in enumerate(lines) if _PROMOTE_IF.match(line)), None)
        if at is None:
            raise MlopsError("the workflow has no promote step condition to replace", "start from deploy-gate.yml")
        indent = _PROMOTE_IF.match(lines[at]).group("indent")  # type: ignore[union-attr]
        lines[at] = f"{indent}if: {json.dumps(promote_if.strip())}\n"
        text = "".join(lines)
    return text


def write_workflow(ws: Workspace, text: str, name: str = "deploy-gate.yml") -> Path:
    """Write a workflow variant into ``<workspace>/workflows/`` (never over the repository's)."""
    path = ws.root / "workflows" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    return path


@dataclass(frozen=True)
class Finding:
    """One problem a check reports on a workflow file."""

    tool: str
    rule: str
    message: str


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise MlopsError(f"{name} is not installed", f"run `make venv` ({name} comes with requirements.txt)")
    return found


ACTIONLINT_ARGS = ("-no-color", "-format", "{{json .}}")
ZIZMOR_ARGS = ("--offline", "--persona", "pedantic", "--no-progress", "--format", "json")


def _start_linter(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _linter_output(tool: str, process: subprocess.Popen[str]) -> list[dict[str, Any]] | Finding:
    """The JSON list a linter printed, or a Finding saying why there is none."""
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return Finding(tool, "error", f"{tool} did not finish within 120 s")
    try:
        reported = json.loads(stdout or "[]")
    except ValueError:
        reported = None
    if not isinstance(reported, list):
        return Finding(tool, "error", (stderr or stdout).strip()[-500:])
    return [item for item in reported if isinstance(item, dict)]


def _actionlint(reported: list[dict[str, Any]] | Finding) -> list[Finding]:
    if isinstance(reported, Finding):
        return [reported]
    return [
        Finding("actionlint", str(item.get("kind", "?")), f"line {item.get('line')}: {item.get('message', '')}")
        for item in reported
    ]


def _zizmor(reported: list[dict[str, Any]] | Finding) -> list[Finding]:
    if isinstance(reported, Finding):
        return [reported]
    return [Finding("zizmor", str(item.get("ident", "?")), str(item.get("desc", "")).strip()) for item in reported]


def lint(path: str | Path) -> list[Finding]:
    """Every finding on a workflow file: the offline runner's own checks, ``actionlint`` (syntax,
    expression types, action inputs) and ``zizmor --offline`` (pedantic: security); [] is clean."""
    from . import ci_local

    path = Path(path)
    # The two linters are separate programs (both found before either starts): they run side by
    # side while the runner checks.
    commands = [[_tool("actionlint"), *ACTIONLINT_ARGS, str(path)], [_tool("zizmor"), *ZIZMOR_ARGS, str(path)]]
    actionlint, zizmor = (_start_linter(command) for command in commands)
    findings: list[Finding] = []
    try:
        document = ci_local.load_workflow(path)
        ci_local.check_steps(document)
    except MlopsError as exc:
        findings.append(Finding("runner", "refused", str(exc)))
    finally:
        linted = _linter_output("actionlint", actionlint), _linter_output("zizmor", zizmor)
    return findings + _actionlint(linted[0]) + _zizmor(linted[1])


def stale_baseline(source: str | Path, dest: str | Path) -> Path:
    """A copy of a baseline whose ``eval_set_hash`` names a different evaluation set."""
    document = json.loads(Path(source).read_text())
    document["eval_set_hash"] = "sha256:" + hashlib.sha256(b"last quarter's evaluation rows").hexdigest()
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(document, indent=2) + "\n")
    return path


def write_manifest(path: str | Path, runs: dict[str, GateRun], run_ids: dict[str, str]) -> dict[str, Any]:
    """Record the lab's evidence: for each named gate run, its candidate, the candidate version's
    MLflow run id, the baseline's SHA-256 at the time, the conclusion and what it released."""
    document = {
        "workflow": str(WORKFLOW.relative_to(REPO)),
        "runs": {
            name: {
                "candidate": run.candidate,
                "mlflow_run_id": run_ids.get(name),
                "eval_baseline_sha256": run.baseline_sha256,
                "conclusion": run.conclusion,
                "exit_code": run.exit_code,
                "first_failure": run.first_failure(),
                "released": [line["semver"] for line in run.new_index_lines],
            }
            for name, run in runs.items()
        },
    }
    write_atomic(Path(path), json.dumps(document, indent=2) + "\n")
    return document


GATE_RESULTS = ("success", "failure", "cancelled", "skipped")


def promote_truth_table(expression: str) -> list[bool]:
    """Whether a step with ``if: expression`` in the release job runs, for each result the gate
    job can have (:data:`GATE_RESULTS`), read by the offline runner's expression reader.

    ``success()`` in that step means "every earlier step of the *release* job succeeded", which
    they have; only ``needs.gate.result`` tells what the gate decided.
    """
    from . import ci_local

    if not isinstance(expression, str) or "\n" in expression or not expression.strip():
        raise MlopsError("the condition must be one line holding a GitHub expression", "e.g. needs.gate.result == 'x'")
    table = []
    for result in GATE_RESULTS:
        contexts = {
            "needs": {"gate": {"result": result, "outputs": {}}},
            "github": {"event_name": "pull_request"},
            "env": {},
            "vars": {},
            "steps": {},
        }
        table.append(ci_local.condition(expression.strip(), contexts, ci_local.Status()))
    return table
