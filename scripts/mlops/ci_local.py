"""Run a GitHub Actions workflow's ``run:`` steps on this machine: no Docker, no network.

The deploy gate's YAML holds no logic of its own: every ``run:`` step is one command of this
project. This module reads the workflow, runs its jobs in ``needs`` order and their steps in
file order with ``bash -eo pipefail`` (GitHub's default shell), and emulates the files GitHub
gives a step, in a folder (``--out``)::

    <out>/event.json                  GITHUB_EVENT_PATH (a pull_request "labeled" payload)
    <out>/<job>/temp/                 RUNNER_TEMP (emptied when the job starts)
    <out>/<job>/<n>-<step>.output     GITHUB_OUTPUT of step n  (parsed into steps.<id>.outputs)
    <out>/<job>/<n>-<step>.env        GITHUB_ENV of step n     (added to the job's environment)
    <out>/<job>/summary.md            GITHUB_STEP_SUMMARY, all steps of the job
    <out>/pr-comment.md               what the workflow would have commented on the pull request
    <out>/run.json                    every job's result and every step's outcome and exit code
    <out>/run-owner                   which run (pid and a random token) the folder belongs to

It prints what CI would show: each job, each step with its outcome, the steps' output.

**The expressions it understands** (in ``if:``, ``env:`` values and job ``outputs:``) are a
strict subset of GitHub's; anything else is refused with :class:`WorkflowError` instead of
being guessed at: literals (``'text'``, numbers, ``true``, ``false``, ``null``); the contexts
``github`` (the emulated event; ``github.workflow``, ``.ref`` = ``refs/pull/<n>/merge``,
``.run_id``), ``env``, ``vars``, ``steps.<id>.outputs.<name>`` /
``.outcome`` / ``.conclusion``, ``needs.<job>.result`` / ``.outputs.<name>``; the operators
``==`` and ``!=`` (strings compare case-insensitively, as on GitHub; values of two different
types other than null are refused), ``!``, ``&&``, ``||`` (returning an operand, as on GitHub)
and parentheses; the functions ``success()``, ``failure()``, ``always()``, ``cancelled()``.

**Steps.** ``uses:`` steps are not run: each is reported as emulated or skipped with what it
would have done (checkout: the working tree at ``repo`` *is* the checkout; setup-python: this
interpreter is ``python``). A ``run:`` step must be one ``python -m scripts.mlops ...`` command
(or ``python -m scripts.mlops.<module> ...``); the dependency install ``python -m pip install -r
requirements.txt`` is reported and skipped (the local virtual environment is the installed
one); ``${{ }}`` inside ``run:`` is refused (values reach commands through ``env:``). All of this,
and every expression, is checked before the first step runs (:func:`check_steps`).

**Concurrency is enforced** (:mod:`scripts.mlops.ci_concurrency`): a workflow-level
``concurrency:`` group is taken before the emulation folder is touched and held until the run
ends; a job-level one is held for the job. A run whose group another offline run of the same
checkout holds is *queued* (printed, with how long it waited) until that run ends; a killed run
frees its groups at once. ``cancel-in-progress: true`` with the group held is refused rather than
cancelling another process, and GitHub's "at most one pending run per group" is not emulated
(every queued run waits); see that module. A job whose group the run already holds is refused
(GitHub cancels it as a deadlock).

**One folder, one run.** The folder belongs to the run that emptied it last (``run-owner``);
a run checks this before and after every step, and stops with :class:`FolderTaken` when another
run has emptied it in between, instead of failing on files that vanished.

**Not emulated** (said again in the chapter): runners, containers and services; ``matrix``,
``strategy``, reusable workflows, composite and JavaScript actions (only reported);
``permissions`` and ``environment`` (only reported: nothing here enforces them); secrets and
``github.token`` (empty); caches and artifacts; ``timeout-minutes``; cancellation; any event
other than ``pull_request`` ``labeled``; the merge commit (the working tree is used as it is,
uncommitted changes included); GitHub's API (comments go to a file).
The commands' own local workspace folders go under ``<out>/<job>/workspaces`` instead of the
checkout (``MLOPS_WORKSPACE_ROOT``); the registry is the one ``vars.MLFLOW_TRACKING_URI`` names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .errors import MlopsError


class WorkflowError(MlopsError):
    """The workflow uses something the offline runner does not emulate, or is malformed."""


class FolderTaken(MlopsError):
    """Another run emptied this run's emulation folder while this run was using it."""


# --------------------------------------------------------------------------------------
# Expressions
# --------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>'(?:[^']|'')*')
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op>==|!=|&&|\|\||!|\(|\)|\.|,)
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
)""",
    re.VERBOSE,
)
_FUNCTIONS = ("success", "failure", "always", "cancelled")
_CONTEXTS = ("github", "env", "vars", "steps", "needs")
_MISSING = object()


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise WorkflowError(
                f"cannot read the expression {text!r} at {text[pos : pos + 20]!r}",
                "the offline runner understands a strict subset of GitHub expressions; "
                "see scripts/mlops/ci_local.py's docstring.",
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


@dataclass
class Status:
    """What the status functions see: has an earlier step (or a needed job) failed?"""

    failed: bool = False


class _Parser:
    def __init__(self, text: str, contexts: Mapping[str, Any], status: Status) -> None:
        self.text, self.contexts, self.status = text, contexts, status
        self.tokens = _tokenize(text)
        self.pos = 0

    def refuse(self, what: str) -> WorkflowError:
        return WorkflowError(
            f"{what} in the expression {self.text!r} is not emulated offline",
            "use only the subset listed in scripts/mlops/ci_local.py's docstring.",
        )

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise self.refuse("an unexpected end")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise self.refuse(f"{token[1]!r} where {expected!r} was expected")
        self.pos += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.pos != len(self.tokens):
            raise self.refuse(f"{self.tokens[self.pos][1]!r}")
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            value = value if truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.unary()
        while self.peek() == "&&":
            self.take()
            right = self.unary()
            value = right if truthy(value) else value
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.unary())
        return self.comparison()

    def comparison(self) -> Any:
        left = self.primary()
        if self.peek() in ("==", "!="):
            op = self.take()[1]
            equal = _equal(left, self.primary(), self)
            return equal if op == "==" else not equal
        return left

    def primary(self) -> Any:
        kind, value = self.take()
        if value == "(" and kind == "op":
            inner = self.or_()
            self.take(")")
            return inner
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind != "name":
            raise self.refuse(repr(value))
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        if self.peek() == "(":
            if value not in _FUNCTIONS:
                raise self.refuse(f"the function {value}()")
            self.take("(")
            self.take(")")
            return {
                "success": not self.status.failed,
                "failure": self.status.failed,
                "always": True,
                "cancelled": False,
            }[value]
        if value not in _CONTEXTS:
            raise self.refuse(f"the context {value!r}")
        current: Any = self.contexts.get(value, {})
        while self.peek() == ".":
            self.take()
            kind, key = self.take()
            if kind != "name":
                raise self.refuse(f"{key!r} after '.'")
            current = current.get(key) if isinstance(current, Mapping) else None
        return current


def truthy(value: Any) -> bool:
    """GitHub's truthiness: false, 0, '' and null are false."""
    return value not in (False, 0, "", None)


def _equal(left: Any, right: Any, parser: _Parser) -> bool:
    if left is None or right is None:
        return left is right
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if type(left) is type(right) or (
        isinstance(left, (int, float))
        and isinstance(right, (int, float))
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ):
        return left == right
    raise parser.refuse(f"comparing {type(left).__name__} with {type(right).__name__}")


def evaluate(expression: str, contexts: Mapping[str, Any], status: Status | None = None) -> Any:
    """Evaluate one expression (with or without its ``${{ }}``)."""
    text = expression.strip()
    if text.startswith("${{") and text.endswith("}}") and text.count("${{") == 1:
        text = text[3:-2]
    return _Parser(text, contexts, status or Status()).parse()


def condition(expression: Any, contexts: Mapping[str, Any], status: Status) -> bool:
    """An ``if:`` value: GitHub adds ``success() &&`` unless a status function is used."""
    if expression is None:
        return not status.failed
    if isinstance(expression, bool):
        return expression and not status.failed
    text = str(expression)
    result = truthy(evaluate(text, contexts, status))
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", text):
        result = result and not status.failed
    return result


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def interpolate(value: Any, contexts: Mapping[str, Any]) -> str:
    """A string with ``${{ expr }}`` parts replaced by their values (for ``env:`` and ``outputs:``)."""
    text = _to_text(value)
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _to_text(evaluate(m.group(1), contexts)), text)


# --------------------------------------------------------------------------------------
# GitHub's step files
# --------------------------------------------------------------------------------------


def parse_key_values(text: str) -> dict[str, str]:
    """Parse a GITHUB_OUTPUT / GITHUB_ENV file: ``name=value`` lines and ``name<<DELIM`` blocks."""
    found: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block = []
            while i < len(lines) and lines[i] != delimiter:
                block.append(lines[i])
                i += 1
            if i >= len(lines):
                raise WorkflowError(
                    f"the multi-line value {name!r} never ends (no line {delimiter!r})",
                    "write the delimiter on a line of its own after the value.",
                )
            i += 1
            found[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
        else:
            raise WorkflowError(
                f"cannot read the line {line!r} of a step's output file",
                "write name=value, or name<<DELIMITER ... DELIMITER.",
            )
    return found


def write_key_value(path: str | Path, name: str, value: str) -> None:
    """Append one value to a GITHUB_OUTPUT-style file (multi-line values get a delimiter block)."""
    with open(path, "a", encoding="utf-8") as handle:
        if "\n" in value:
            delimiter = "EOF_" + os.urandom(8).hex()
            body = value if value.endswith("\n") else value + "\n"  # as on GitHub, one final newline is dropped
            handle.write(f"{name}<<{delimiter}\n{body}{delimiter}\n")
        else:
            handle.write(f"{name}={value}\n")


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------

_PROJECT_COMMAND = re.compile(r"^python -m scripts\.mlops(\.[a-z_]+)?(\s|$)")
_INSTALL_COMMAND = "python -m pip install -r requirements.txt"
_WORKFLOW_KEYS = {"name", "on", "permissions", "concurrency", "env", "jobs", "run-name"}
_JOB_KEYS = {
    "name",
    "runs-on",
    "permissions",
    "concurrency",
    "environment",
    "needs",
    "if",
    "env",
    "steps",
    "outputs",
    "timeout-minutes",
}
_STEP_KEYS = {"name", "id", "if", "uses", "with", "run", "env", "shell", "timeout-minutes"}
_CONCURRENCY_KEYS = {"group", "cancel-in-progress"}
_KNOWN_ACTIONS = {
    "actions/checkout": "emulated: the working tree at {repo} is the checkout (GitHub would check out the "
    "pull request's merge commit)",
    "actions/setup-python": "emulated: `python` is {python}",
    "actions/upload-artifact": "skipped: would upload files as a workflow artifact",
    "actions/cache": "skipped: would restore and save a cache",
}


MAX_STEP_OUTPUT = 20_000


@dataclass
class StepResult:
    name: str
    id: str | None
    outcome: str  # success, failure, skipped
    exit_code: int | None = None
    seconds: float = 0.0
    started_at: float = 0.0  # time.time() when the command started (0 for steps that did not run)
    note: str = ""
    output: str = ""  # what the command printed (its last MAX_STEP_OUTPUT characters)
    outputs: dict[str, str] = field(default_factory=dict)
    exported: list[str] = field(default_factory=list)  # names the step wrote to GITHUB_ENV


@dataclass
class JobResult:
    name: str
    result: str  # success, failure, skipped
    steps: list[StepResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""

    def step(self, step_id: str) -> StepResult:
        return next(step for step in self.steps if step.id == step_id)


@dataclass
class WorkflowRun:
    """The outcome of :func:`run_workflow`."""

    workflow: Path
    out: Path
    jobs: dict[str, JobResult]
    seconds: float
    #: Concurrency groups the run (or one of its jobs) held: name -> seconds spent queued for it.
    queued: dict[str, float] = field(default_factory=dict)

    @property
    def conclusion(self) -> str:
        return "failure" if any(job.result == "failure" for job in self.jobs.values()) else "success"

    def to_dict(self) -> dict[str, Any]:
        """What ``<out>/run.json`` holds: the conclusion, and every job's steps with their outcomes."""
        return {
            "workflow": str(self.workflow),
            "conclusion": self.conclusion,
            "seconds": round(self.seconds, 3),
            "concurrency": {group: {"queued_seconds": round(waited, 3)} for group, waited in self.queued.items()},
            "jobs": {
                name: {"result": job.result, "outputs": job.outputs, "steps": [asdict(step) for step in job.steps]}
                for name, job in self.jobs.items()
            },
        }

    @property
    def comment(self) -> str | None:
        path = self.out / "pr-comment.md"
        return path.read_text() if path.is_file() else None


def is_one_project_command(command: str) -> bool:
    """True for a single ``python -m scripts.mlops...`` command: no shell operators outside quotes."""
    import shlex

    if "\n" in command or "`" in command or "$(" in command or not _PROJECT_COMMAND.match(command):
        return False
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes
        return False
    return not any(token and set(token) <= set("();<>|&") for token in tokens)


def load_workflow(path: str | Path) -> dict[str, Any]:
    """Read a workflow file, checking it only uses keys the offline runner knows."""
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MlopsError(f"no workflow file {path}", "pass --workflow .github/workflows/deploy-gate.yml") from None
    except yaml.YAMLError as exc:
        raise WorkflowError(f"{path} is not valid YAML: {exc}", "fix the file (actionlint shows where).") from None
    if not isinstance(document, dict):
        raise WorkflowError(f"{path} is not a workflow (no mapping at the top)", "start from deploy-gate.yml.")
    if True in document:  # YAML 1.1 reads the key `on` as the boolean true
        document["on"] = document.pop(True)
    _check_keys(document, _WORKFLOW_KEYS, f"{path.name}")
    _check_concurrency(document.get("concurrency"), f"{path.name}")
    if not isinstance(document.get("jobs"), dict) or not document["jobs"]:
        raise WorkflowError(f"{path} has no jobs", "add a `jobs:` mapping.")
    for job_id, job in document["jobs"].items():
        _check_keys(job, _JOB_KEYS, f"job {job_id!r}")
        _check_concurrency(job.get("concurrency"), f"job {job_id!r}")
        for number, step in enumerate(job.get("steps") or [], 1):
            _check_keys(step, _STEP_KEYS, f"step {number} of job {job_id!r}")
            if ("uses" in step) == ("run" in step):
                raise WorkflowError(
                    f"step {number} of job {job_id!r} needs exactly one of `uses:` and `run:`",
                    "split it into two steps.",
                )
    return document


def check_steps(document: Mapping[str, Any]) -> None:
    """Refuse, before anything runs, every step and expression the runner would refuse later."""
    probe: dict[str, Any] = {name: {} for name in _CONTEXTS}
    concurrency_of(document.get("concurrency"), probe)
    for job_id, job in document["jobs"].items():
        concurrency_of(job.get("concurrency"), probe)
        conditions = [job.get("if")]
        values = [*(job.get("env") or {}).values(), *(job.get("outputs") or {}).values()]
        for step in job.get("steps") or []:
            conditions.append(step.get("if"))
            values += list((step.get("env") or {}).values())
            if "run" in step:
                _check_run(step, job_id)
        for expression in conditions:
            if isinstance(expression, str):
                evaluate(expression, probe)
        for value in values:
            for inner in re.findall(r"\$\{\{(.*?)\}\}", str(value)):
                evaluate(inner, probe)


def _check_run(step: Mapping[str, Any], job_id: str) -> None:
    name = str(step.get("name") or step["run"]).splitlines()[0]
    command = str(step["run"]).strip()
    if "${{" in command:
        raise WorkflowError(
            f"step {name!r} of job {job_id!r} has `${{{{ }}}}` inside `run:`",
            'pass the value through the step\'s `env:` and use "$NAME" in the command.',
        )
    if step.get("shell", "bash") != "bash":
        raise WorkflowError(f"step {name!r} uses shell {step['shell']!r}", "use the default shell (bash).")
    if command != _INSTALL_COMMAND and not is_one_project_command(command):
        raise WorkflowError(
            f"step {name!r} runs {command[:60]!r}, which is not one project command",
            "make every run: step one `python -m scripts.mlops ...` command "
            "(no ;, &&, ||, pipes, redirections or command substitution).",
        )


def _check_concurrency(spec: Any, where: str) -> None:
    if spec is None or isinstance(spec, str):
        return
    _check_keys(spec, _CONCURRENCY_KEYS, f"the concurrency of {where}")
    if "group" not in spec:
        raise WorkflowError(
            f"the concurrency of {where} has no `group:`", "name the group: `group: deploy-gate-MODEL`."
        )


def concurrency_of(spec: Any, contexts: Mapping[str, Any]) -> tuple[str, bool] | None:
    """A ``concurrency:`` value (a group name, or ``{group, cancel-in-progress}``), evaluated.

    Returns (group name, cancel-in-progress), or None when there is no ``concurrency:``. The
    group's ``${{ }}`` parts are evaluated like ``env:`` values; ``cancel-in-progress`` is a
    boolean or an expression.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        return interpolate(spec, contexts), False
    cancel = spec.get("cancel-in-progress", False)
    if isinstance(cancel, str):
        cancel = truthy(evaluate(cancel, contexts))
    elif not isinstance(cancel, bool):
        raise WorkflowError(
            f"cancel-in-progress is {cancel!r}, not a boolean", "write cancel-in-progress: false (or true)."
        )
    return interpolate(spec["group"], contexts), cancel


def _check_keys(mapping: Any, allowed: set[str], where: str) -> None:
    if not isinstance(mapping, dict):
        raise WorkflowError(f"{where} is not a mapping", "check the indentation.")
    unknown = sorted(set(map(str, mapping)) - allowed)
    if unknown:
        raise WorkflowError(
            f"{where} uses {unknown}, which the offline runner does not emulate",
            f"use only {sorted(allowed)} (see scripts/mlops/ci_local.py), or run it on GitHub.",
        )


def _check_trigger(document: Mapping[str, Any]) -> None:
    on = document.get("on")
    pull_request = on.get("pull_request") if isinstance(on, dict) else None
    types = (pull_request or {}).get("types") if isinstance(pull_request, dict) else None
    if not (isinstance(types, list) and "labeled" in types):
        raise WorkflowError(
            "the workflow is not triggered by `pull_request` with `types: [labeled]`",
            "the offline runner emulates only that event (a pull request given a label).",
        )


def job_order(jobs: Mapping[str, Any]) -> list[str]:
    """Jobs in an order where each comes after the jobs it ``needs`` (file order otherwise)."""
    order: list[str] = []
    pending = list(jobs)
    while pending:
        for job_id in pending:
            needs = _needs(jobs[job_id])
            missing = [n for n in needs if n not in jobs]
            if missing:
                raise WorkflowError(f"job {job_id!r} needs {missing}, which do not exist", "fix `needs:`.")
            if all(n in order for n in needs):
                order.append(job_id)
                pending.remove(job_id)
                break
        else:
            raise WorkflowError(f"the jobs {pending} need each other in a cycle", "fix `needs:`.")
    return order


def _needs(job: Mapping[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "step"


@dataclass
class Runner:
    """Runs one workflow; see :func:`run_workflow`."""

    workflow: Path
    repo: Path
    out: Path
    variables: Mapping[str, str]
    env_overrides: Mapping[str, str]
    label: str
    stream: TextIO
    warm: bool = True
    pr_number: int = 1
    locks: Path | None = None  # the concurrency groups' lock folder (None: ci_concurrency.lock_folder(repo))
    run_id: str = field(default_factory=lambda: f"offline-{int(time.time() * 1000)}")
    owner: str = field(default_factory=lambda: f"pid-{os.getpid()} {os.urandom(8).hex()}")
    queued: dict[str, float] = field(default_factory=dict)  # every group held so far -> seconds queued
    holding: set[str] = field(default_factory=set)  # the groups held right now

    def say(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def base_env(self) -> dict[str, str]:
        """This process's environment less anything the workflow itself must supply."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GITHUB_", "RUNNER_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY", "MLOPS_"))
        }
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(
            {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_EVENT_NAME": "pull_request",
                "GITHUB_EVENT_PATH": str(self.out / "event.json"),
                "GITHUB_WORKSPACE": str(self.repo),
                "GITHUB_REPOSITORY": "offline/repository",
                "GITHUB_RUN_ID": self.run_id,
                "GITHUB_ACTOR": "offline-runner",
                "MLOPS_CI_OFFLINE": str(self.out),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def event(self) -> dict[str, Any]:
        label = {"name": self.label}
        return {
            "action": "labeled",
            "label": label,
            "number": self.pr_number,
            "pull_request": {"number": self.pr_number, "labels": [label], "draft": False},
        }

    def run(self) -> WorkflowRun:
        started = time.perf_counter()
        document = load_workflow(self.workflow)
        _check_trigger(document)
        check_steps(document)
        if self.out == self.repo or self.out in self.repo.parents:
            raise MlopsError(
                f"the emulation folder {self.out} would contain the checkout {self.repo}",
                "pass --out a folder of its own, e.g. .mlops/ci-run.",
            )
        event = self.event()
        name = str(document.get("name", self.workflow.name))
        github = {
            "event_name": "pull_request",
            "event": event,
            "token": "",
            "repository": "offline/repository",
            "actor": "offline-runner",
            "workspace": str(self.repo),
            "workflow": name,
            "ref": f"refs/pull/{self.pr_number}/merge",
            "run_id": self.run_id,
        }
        contexts: dict[str, Any] = {"github": github, "vars": dict(self.variables), "env": {}}
        self.say(f"workflow {name} ({self.workflow}) on pull_request labeled {self.label!r}, offline in {self.out}")
        with ExitStack() as groups:
            # The workflow's group is taken before the emulation folder is touched: a queued run
            # empties nothing while the run holding the group still uses it.
            self.hold(groups, document.get("concurrency"), contexts, "  ")
            self.prepare_folder(event)
            workflow_env = {key: interpolate(value, contexts) for key, value in (document.get("env") or {}).items()}
            workflow_env.update(self.env_overrides)
            jobs: dict[str, JobResult] = {}
            try:
                for job_id in job_order(document["jobs"]):
                    job = document["jobs"][job_id]
                    with ExitStack() as job_group:
                        needs = {n: {"result": jobs[n].result, "outputs": jobs[n].outputs} for n in _needs(job)}
                        self.hold(job_group, job.get("concurrency"), {**contexts, "needs": needs}, "  ", job_id)
                        jobs[job_id] = self.run_job(job_id, job, contexts, workflow_env, jobs)
                self.check_folder()
                run = WorkflowRun(self.workflow, self.out, jobs, time.perf_counter() - started, dict(self.queued))
                (self.out / "run.json").write_text(json.dumps(run.to_dict(), indent=2) + "\n")
            except FileNotFoundError as exc:
                # Only another run empties this folder: a file of this run that vanished from it
                # means that run is emptying it now (check_folder may have passed just before).
                if exc.filename is not None and Path(os.path.abspath(exc.filename)).is_relative_to(self.out):
                    self.check_folder(vanished=os.fspath(exc.filename))
                raise
        self.say(f"\nworkflow {run.conclusion.upper()} in {run.seconds:.1f} s")
        if run.comment is not None:
            self.say(f"pull request comment ({self.out / 'pr-comment.md'}):\n")
            self.say(run.comment)
        return run

    def hold(
        self, stack: ExitStack, spec: Any, contexts: Mapping[str, Any], indent: str, job_id: str | None = None
    ) -> None:
        """Enter the concurrency group ``spec`` names (if any) on ``stack``: queue while another run holds it."""
        from . import ci_concurrency

        found = concurrency_of(spec, contexts)
        if found is None:
            return
        group, cancel = found
        where = "the workflow" if job_id is None else f"job {job_id!r}"
        if group in self.holding:
            raise WorkflowError(
                f"{where} asks for concurrency group {group!r}, which this run already holds (GitHub cancels such a "
                "job: a deadlock between the workflow's group and the job's)",
                "give the job a group of its own, or drop its `concurrency:` (the workflow's group covers it).",
            )
        who = f"pid {os.getpid()} (run {self.run_id}, {where}, folder {self.out})"
        held = stack.enter_context(
            ci_concurrency.hold(
                group,
                self.locks or ci_concurrency.lock_folder(self.repo),
                who=who,
                cancel_in_progress=cancel,
                say=lambda line: self.say(indent + line),
            )
        )
        self.queued[group] = held.waited
        self.holding.add(group)
        stack.callback(self.holding.discard, group)  # a job's group is free again for the jobs after it

    def prepare_folder(self, event: Mapping[str, Any]) -> None:
        """Empty the emulation folder (only one of ours) and claim it for this run (``run-owner``)."""
        if self.out.exists():
            if any(self.out.iterdir()) and not (self.out / "event.json").is_file():
                raise MlopsError(
                    f"{self.out} is not empty and is not an emulation folder, so it was left untouched",
                    "pass --out a new or empty folder (it is emptied before every run).",
                )
            for attempt in range(3):  # a run that does not hold the group may still be writing into it
                try:
                    shutil.rmtree(self.out)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt == 2:
                        raise
                    time.sleep(0.2)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "run-owner").write_text(self.owner + "\n")
        (self.out / "event.json").write_text(json.dumps(event, indent=2))

    def check_folder(self, vanished: str | None = None) -> None:
        """Stop with :class:`FolderTaken` when another run has emptied and claimed the emulation folder,
        or is emptying it now (``vanished``: a file of this run in it is gone)."""
        try:
            owner = (self.out / "run-owner").read_text().strip()
        except FileNotFoundError:
            owner = ""
        if owner != self.owner or vanished is not None:
            if owner == self.owner:
                other = f"still this run's, but being emptied: {vanished} vanished"
            else:
                other = f"now {owner.split()[0]}" if owner else "emptied, not yet claimed"
            raise FolderTaken(
                f"another run emptied the emulation folder {self.out} while this run (pid {os.getpid()}) was using "
                f"it (its run-owner: {other}); this run's step files and RUNNER_TEMP are gone, so it stopped",
                "run the two one after the other: keep the workflow's `concurrency:` group (a second run then queues "
                "before it touches the folder), or give each run its own --out folder.",
            )

    def run_job(
        self,
        job_id: str,
        job: Mapping[str, Any],
        contexts: dict[str, Any],
        workflow_env: Mapping[str, str],
        done: Mapping[str, JobResult],
    ) -> JobResult:
        needs = {n: {"result": done[n].result, "outputs": done[n].outputs} for n in _needs(job)}
        job_contexts = {**contexts, "needs": needs, "env": dict(workflow_env)}
        status = Status(failed=any(done[n].result != "success" for n in needs))
        self.say(f"\njob {job_id}" + (f" ({job['name']})" if "name" in job else ""))
        for key in ("permissions", "environment"):
            if key in job:
                self.say(f"  {key}: {json.dumps(job[key])} (reported, not enforced offline)")
        if not condition(job.get("if"), job_contexts, status):
            self.say(f"  skipped (if: {job.get('if', 'success()')})")
            return JobResult(job_id, "skipped")
        self.check_folder()
        folder = self.out / job_id
        temp = folder / "temp"
        temp.mkdir(parents=True, exist_ok=True)
        summary = folder / "summary.md"
        summary.touch()
        # MLOPS_WORKSPACE_ROOT keeps the commands' (empty) local workspace folders out of the checkout.
        env = {
            **self.base_env(),
            **workflow_env,
            "RUNNER_TEMP": str(temp),
            "GITHUB_JOB": job_id,
            "GITHUB_STEP_SUMMARY": str(summary),
            "MLOPS_WORKSPACE_ROOT": str(folder / "workspaces"),
        }
        job_env = {key: interpolate(value, job_contexts) for key, value in (job.get("env") or {}).items()}
        env.update(job_env)
        declared = {**workflow_env, **job_env}  # the `env` context: what the workflow set, not the machine's
        result = JobResult(job_id, "success")
        steps: dict[str, Any] = {}
        step_status = Status()
        for number, step in enumerate(job.get("steps") or [], 1):
            step_contexts = {**job_contexts, "steps": steps, "env": declared}
            outcome = self.run_step(number, step, step_contexts, step_status, env, folder)
            declared.update({key: env[key] for key in outcome.exported})
            result.steps.append(outcome)
            if outcome.id:
                steps[outcome.id] = {
                    "outputs": outcome.outputs,
                    "outcome": outcome.outcome,
                    "conclusion": outcome.outcome,
                }
            if outcome.outcome == "failure":
                step_status.failed = True
        result.result = "failure" if step_status.failed else "success"
        self.check_folder()
        final = {**job_contexts, "steps": steps, "env": declared}
        result.outputs = {key: interpolate(value, final) for key, value in (job.get("outputs") or {}).items()}
        result.summary = summary.read_text()
        self.say(f"  job {job_id}: {result.result}")
        return result

    def run_step(
        self,
        number: int,
        step: Mapping[str, Any],
        contexts: Mapping[str, Any],
        status: Status,
        env: dict[str, str],
        folder: Path,
    ) -> StepResult:
        name = str(step.get("name") or step.get("uses") or step.get("run", "")).splitlines()[0]
        result = StepResult(name, step.get("id"), "skipped")
        if not condition(step.get("if"), contexts, status):
            self.say(f"  - {name}: skipped (if: {step.get('if', 'success()')})")
            return result
        if "uses" in step:
            action, _, ref = str(step["uses"]).partition("@")
            note = _KNOWN_ACTIONS.get(action, "skipped: {action} is not emulated offline").format(
                repo=self.repo, python=sys.executable, action=action
            )
            self.say(f"  - {name}: {note} [{action}@{ref[:12]}]")
            result.outcome, result.note = "success", note
            return result
        command = str(step["run"]).strip()  # its form was checked by check_steps before the run
        if command == _INSTALL_COMMAND:
            self.say(f"  - {name}: skipped: the local virtual environment is the installed one (make venv)")
            result.outcome, result.note = "success", "install skipped"
            return result
        self.check_folder()
        stem = f"{number:02d}-{_slug(step.get('id') or name)}"
        output_file, env_file = folder / f"{stem}.output", folder / f"{stem}.env"
        output_file.touch()
        env_file.touch()
        step_env = {**env, "GITHUB_OUTPUT": str(output_file), "GITHUB_ENV": str(env_file)}
        step_env.update({key: interpolate(value, contexts) for key, value in (step.get("env") or {}).items()})
        self.say(f"  - {name}\n    $ {command}")
        started = time.perf_counter()
        result.started_at = time.time()
        printed = _Lines(lambda line: self.say("    | " + line))
        from . import warm

        argv = _expand(command, step_env, self.repo) if self.warm and warm.fits(step_env) else None
        if argv is not None:
            result.exit_code = warm.run_module(argv, env=step_env, cwd=str(self.repo), on_output=printed.feed)
        else:
            process = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command],
                cwd=self.repo,
                env=step_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            assert process.stdout is not None
            while chunk := os.read(process.stdout.fileno(), 65536):
                printed.feed(chunk)
            result.exit_code = process.wait()
        result.output = printed.close()[-MAX_STEP_OUTPUT:]
        result.seconds = time.perf_counter() - started
        self.check_folder()  # before reading the step's files: they may belong to another run by now
        result.outputs = parse_key_values(output_file.read_text())
        exported = parse_key_values(env_file.read_text())
        env.update(exported)
        result.exported = sorted(exported)
        result.outcome = "success" if result.exit_code == 0 else "failure"
        mark = "ok" if result.exit_code == 0 else f"FAILED (exit {result.exit_code})"
        self.say(f"    {mark} in {result.seconds:.1f} s")
        return result


class _Lines:
    """Collects a step's output bytes and hands each complete line to ``say`` as it arrives."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.pending = b""
        self.lines: list[str] = []

    def feed(self, chunk: bytes) -> None:
        *complete, self.pending = (self.pending + chunk).split(b"\n")
        for raw in complete:
            self._emit(raw)

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace")
        self.lines.append(line + "\n")
        self.say(line)

    def close(self) -> str:
        """Everything printed, the last line included even without its newline."""
        if self.pending:
            self._emit(self.pending)
            self.lines[-1] = self.lines[-1][:-1]
            self.pending = b""
        return "".join(self.lines)


def _expand(command: str, env: Mapping[str, str], cwd: Path) -> list[str] | None:
    """The ``-m MODULE ARGS...`` that bash would pass to ``python`` for ``command``, or None.

    bash itself expands the words (quotes, ``$VARIABLES``), exactly as it would for the real
    ``python``, by running the same line with ``printf`` in place of ``python``. None means "run
    it in a fresh interpreter instead" (not a plain project command, or the expansion failed).
    """
    if not is_one_project_command(command):
        return None
    line = "printf '%s\\0' " + command[len("python ") :]
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", line],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    words = done.stdout.decode("utf-8", errors="surrogateescape").split("\0")[:-1]
    if done.returncode != 0 or len(words) < 2 or words[0] != "-m":
        return None
    return words[1:]


def warm_up() -> None:
    """Start, in the background, the warm interpreter that steps fork from (:mod:`.warm`)."""
    from . import warm

    warm.warm_up()


def run_workflow(
    workflow: str | Path,
    *,
    repo: str | Path = ".",
    out: str | Path,
    variables: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    label: str = "deploy-candidate",
    stream: TextIO | None = None,
    warm: bool | None = None,
    locks: str | Path | None = None,
) -> WorkflowRun:
    """Run ``workflow`` offline as if a pull request had just been given ``label``.

    ``repo`` is the checkout (steps run there); ``out`` the emulation folder (emptied first);
    ``variables`` the repository variables (``vars.NAME``); ``env`` overrides workflow-level
    ``env:`` values, as if the workflow file had set them. ``warm`` runs each project command
    in a process forked from a warm interpreter (:mod:`scripts.mlops.warm`: same commands, same
    environment, without re-importing MLflow per step); False starts a fresh ``python`` per step,
    as GitHub does; None (the default) is warm unless ``MLOPS_COLD=1``. ``locks`` is the folder
    of the ``concurrency:`` groups' locks, shared by the runs that must exclude each other
    (default: :func:`scripts.mlops.ci_concurrency.lock_folder` of ``repo``).
    """
    from . import warm as warm_module

    runner = Runner(
        Path(workflow).resolve(),
        Path(repo).resolve(),
        Path(out).resolve(),
        dict(variables or {}),
        dict(env or {}),
        label,
        stream or sys.stdout,
        warm_module.enabled() if warm is None else warm,
        locks=Path(locks).resolve() if locks is not None else None,
    )
    return runner.run()
