"""``doctor``: look at a workspace or tracking store from outside and say what is wrong, with the fix.

Each check is a small function returning :class:`Finding` objects (``ok``, ``warn``, ``fail``
or ``skip``); :func:`diagnose` runs the ones that apply and :func:`render` prints the table::

    python -m scripts.mlops doctor --workspace .mlops/05-troubleshooting --port 5000 \\
        --data new_batch.csv --baseline eval_baseline.json

What it checks: which store the tracking URI resolves to (and whether that is MLflow's
default in the current folder because ``MLFLOW_TRACKING_URI`` is unset), whether the store
answers (HTTP with a short timeout: never a hang), the SQLite schema revision against the
installed MLflow's, a lock held on the database (and by which process), registered models and
the ``production``/``staging`` aliases, the artifacts of the versions behind those aliases, a
TCP port in use (and by which process), the evaluation set's fingerprint against the
baseline's, and the label set of a data file.

It changes nothing: an embedded store is read with SQLite alone (read-only, as the grader
does, which also keeps a healthy check under 3 s: importing MLflow alone costs about 2 s), a
missing database is reported rather than created, and MLflow is imported only for a store
behind an HTTP server.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from . import procs

Status = Literal["ok", "warn", "fail", "skip"]
MARKS: dict[str, str] = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}
DEFAULT_MODEL = "churn-classifier"
#: ``production`` must be set; ``staging`` is reported when missing but does not fail the check.
REQUIRED_ALIASES: tuple[str, ...] = ("production",)
OPTIONAL_ALIASES: tuple[str, ...] = ("staging",)
HTTP_TIMEOUT = 2.0
LOCK_TIMEOUT = 0.2
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
#: The registry's internal bookkeeping models (see registry.INTERNAL_SUFFIX).
_INTERNAL_SUFFIX = ".promotion-lock"


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked, the verdict, what was seen and how to fix it."""

    check: str
    status: Status
    detail: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "fail"


@dataclass(frozen=True)
class Target:
    """The store to examine and how it was chosen (``--tracking-uri``, ``--workspace``, env or default)."""

    uri: str
    source: str
    workspace: Path | None = None

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a ``sqlite:///`` URI (None for other stores)."""
        return sqlite_path(self.uri)

    @property
    def is_http(self) -> bool:
        return self.uri.startswith(("http://", "https://"))


@dataclass
class Report:
    """Every finding of one run, in order, and how long the run took."""

    target: Target
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return not any(f.failed for f in self.findings)

    def __getitem__(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def failed_checks(self) -> list[str]:
        return sorted({f.check for f in self.findings if f.failed})


# --- where the store is ---------------------------------------------------------------------


def sqlite_path(uri: str) -> Path | None:
    """``sqlite:///rel.db`` -> ``rel.db``, ``sqlite:////abs.db`` -> ``/abs.db``; None otherwise."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or ":memory:" in uri:
        return None
    return Path(unquote(uri[len(prefix) :].split("?", 1)[0]))


def mlflow_default_uri(cwd: Path | None = None) -> str:
    """The tracking URI MLflow uses when none is set, for folder ``cwd``.

    MLflow 3 keeps a ``./mlruns`` file store that already holds experiments (a folder with a
    numeric name and a ``meta.yaml``), and otherwise uses ``sqlite:///mlflow.db`` in the current
    folder. Mirrored here so the check does not import MLflow; the tests compare it with
    ``mlflow.get_tracking_uri()``.
    """
    folder = (cwd or Path.cwd()).resolve()
    mlruns = folder / "mlruns"
    try:
        if any(
            entry.is_dir() and entry.name.isdigit() and (entry / "meta.yaml").exists() for entry in mlruns.iterdir()
        ):
            return mlruns.as_uri()
    except OSError:
        pass
    return f"sqlite:///{folder / 'mlflow.db'}"


def workspace_folder(name_or_path: str) -> Path:
    """A workspace given as a folder path, or as a name under ``$MLOPS_WORKSPACE_ROOT`` (``.mlops``)."""
    from .workspace import DEFAULT_ROOT

    given = Path(name_or_path)
    if given.is_dir() or given.is_absolute() or len(given.parts) > 1:
        return given
    return Path(os.environ.get("MLOPS_WORKSPACE_ROOT", DEFAULT_ROOT)) / given


def resolve_target(workspace: str | None = None, tracking_uri: str | None = None, cwd: Path | None = None) -> Target:
    """The store doctor examines: ``--tracking-uri``, else ``--workspace``, else what MLflow would use in ``cwd``."""
    if tracking_uri:
        return Target(tracking_uri, "--tracking-uri")
    if workspace:
        folder = workspace_folder(workspace)
        return Target(f"sqlite:///{(folder / 'mlflow.db').resolve()}", "--workspace", folder)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return Target(env, "MLFLOW_TRACKING_URI")
    return Target(mlflow_default_uri(cwd), "MLflow's default (MLFLOW_TRACKING_URI is unset)")


# --- the checks -----------------------------------------------------------------------------


def check_store(target: Target) -> list[Finding]:
    """Which store the URI names, and a warning when it is an accident of the current folder."""
    findings: list[Finding] = []
    db = target.sqlite_path
    if target.is_http:
        findings.append(Finding("store", "ok", f"tracking server {target.uri} (from {target.source})"))
    elif db is not None:
        findings.append(Finding("store", "ok", f"SQLite file {db} (from {target.source})"))
    elif target.uri.startswith("file:") or "://" not in target.uri:
        findings.append(
            Finding(
                "store",
                "warn",
                f"file store {target.uri} (from {target.source}): MLflow 3 keeps it only for old ./mlruns data",
                "migrate to SQLite or a tracking server; the labs use sqlite:///.mlops/<lab>/mlflow.db.",
            )
        )
    else:
        findings.append(
            Finding(
                "store",
                "fail",
                f"unsupported tracking URI {target.uri!r} (from {target.source})",
                "use sqlite:///PATH/mlflow.db, http://127.0.0.1:PORT or a lab workspace (--workspace).",
            )
        )
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if target.source.startswith("MLflow's default"):
        findings.append(
            Finding(
                "store",
                "warn",
                f"MLFLOW_TRACKING_URI is unset: a script run in that folder reads and writes {target.uri}, "
                "not your lab's workspace",
                "export MLFLOW_TRACKING_URI=sqlite:///$PWD/.mlops/<lab>/mlflow.db (or http://127.0.0.1:PORT) in "
                "every shell and CI step that must see the lab's registry, or pass --workspace.",
            )
        )
    elif target.source == "--workspace" and env and env != target.uri:
        findings.append(
            Finding(
                "store",
                "warn",
                f"MLFLOW_TRACKING_URI={env} is set: open_workspace and the CLI will use it, not {target.uri}",
                "unset MLFLOW_TRACKING_URI to use the workspace's own mlflow.db, or run doctor --tracking-uri "
                "with that URI.",
            )
        )
    return findings


def check_reachable(target: Target, timeout: float = HTTP_TIMEOUT) -> Finding:
    """The store answers: the SQLite file exists and is a database, or the server's ``/health`` says OK."""
    db = target.sqlite_path
    if db is not None:
        from .errors import MlopsError
        from .workspace import check_database

        if not db.is_file():
            return Finding(
                "reachable",
                "fail",
                f"{db} does not exist: MLflow would silently create an empty registry there",
                "point at the workspace that holds your models (--workspace / MLFLOW_TRACKING_URI), or create it "
                "with open_workspace(...) and register a version.",
            )
        try:
            check_database(db)
        except MlopsError as exc:
            return Finding("reachable", "fail", exc.problem, exc.fix)
        return Finding("reachable", "ok", f"{db} is an SQLite database ({db.stat().st_size} bytes)")
    if not target.is_http:
        return Finding("reachable", "skip", "not an SQLite file or HTTP server")
    return _http_health(target.uri, timeout)


def _http_health(uri: str, timeout: float) -> Finding:
    import httpx

    url = uri.rstrip("/") + "/health"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.TimeoutException:
        return Finding(
            "reachable",
            "fail",
            f"{url} did not answer within {timeout:g} s",
            "the server is hung or overloaded: read its log; restart it (stop its pid, see --port) if needed.",
        )
    except httpx.HTTPError as exc:
        return Finding(
            "reachable",
            "fail",
            f"{url}: {type(exc).__name__}: {exc}",
            "start the server (mlflow server --host 127.0.0.1 --port PORT --backend-store-uri sqlite:///...) or fix "
            "MLFLOW_TRACKING_URI.",
        )
    if response.status_code != 200:
        return Finding(
            "reachable",
            "fail",
            f"{url} answered {response.status_code}: {response.text[:200]!r}",
            "read the server's log; a 403 'Invalid Host header' means the host is not in --allowed-hosts.",
        )
    return Finding("reachable", "ok", f"{url} answered 200 {response.text.strip()[:40]!r}")


def mlflow_head_revision() -> str | None:
    """The newest schema revision of the installed MLflow (read from its migration scripts, no import)."""
    import importlib.util

    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in folder.glob("*.py"):
        text = script.read_text(errors="replace")
        found = re.search(r"^revision\s*=\s*['\"]([0-9a-z_]+)['\"]", text, re.MULTILINE)
        if found:
            revisions.add(found.group(1))
        down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.MULTILINE)
        if down:
            parents.update(re.findall(r"['\"]([0-9a-z_]+)['\"]", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _connect_ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=LOCK_TIMEOUT)


def check_schema(db: Path) -> Finding:
    """The database's Alembic revision against the installed MLflow's newest one."""
    head = mlflow_head_revision()
    try:
        with _connect_ro(db) as connection:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as exc:
        return Finding(
            "schema",
            "fail",
            f"cannot read the schema revision of {db}: {exc}",
            "is this an MLflow database? If it is locked, see the lock check.",
        )
    found = row[0] if row else None
    if head is None:
        return Finding("schema", "warn", f"revision {found}; the installed MLflow's head revision is unknown")
    if found == head:
        return Finding("schema", "ok", f"revision {found} = the installed MLflow's head")
    return Finding(
        "schema",
        "fail",
        f"revision {found}, but the installed MLflow expects {head}: MLflow refuses the database "
        "('out-of-date database schema')",
        f"back up {db.name}, then `mlflow db upgrade sqlite:///{db}`; or install the MLflow version that wrote it "
        "(requirements.txt pins the labs' version).",
    )


def check_lock(db: Path) -> Finding:
    """Whether a write lock can be taken now (held briefly, then released); who holds it if not."""
    try:
        connection = sqlite3.connect(str(db), timeout=LOCK_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        return Finding("lock", "fail", f"cannot open {db}: {exc}")
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            return Finding("lock", "warn", f"could not test the lock on {db}: {exc}")
        holders = procs.file_holders(db)
        who = "; ".join(str(p) for p in holders) or "a process this user cannot see"
        pids = " ".join(str(p.pid) for p in holders) or "PID"
        return Finding(
            "lock",
            "fail",
            f"{db.name} is locked ({exc}); held open by {who}",
            f"let that command finish, or stop it by id: `kill {pids}`. Never delete mlflow.db or its journal: "
            "that destroys the registry (and the lock holder's writes).",
        )
    finally:
        connection.close()
    return Finding("lock", "ok", f"no lock held on {db.name}")


@dataclass(frozen=True)
class AliasTarget:
    """A version an alias points at, and where its artifacts are stored."""

    model: str
    alias: str
    version: int
    location: str


def sqlite_registry(db: Path) -> tuple[list[str], list[AliasTarget]]:
    """Registered model names and every alias with its version's storage location (SQLite alone)."""
    with _connect_ro(db) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM registered_models ORDER BY name")]
        rows = connection.execute(
            "SELECT a.name, a.alias, a.version, COALESCE(v.storage_location, v.source, '') "
            "FROM registered_model_aliases a LEFT JOIN model_versions v ON v.name = a.name AND v.version = a.version "
            "ORDER BY a.name, a.alias"
        ).fetchall()
    return names, [AliasTarget(str(n), str(a), int(v), str(loc)) for n, a, v, loc in rows]


@contextmanager
def _pointed_at(uri: str) -> Iterator[None]:
    """MLflow's tracking and registry URIs set to ``uri`` for a block, then put back (environment included)."""
    import mlflow

    from . import registry

    saved_env = {key: os.environ.get(key) for key in (*_URI_VARIABLES, *registry.FAIL_FAST_ENV)}
    saved = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    registry.fail_fast_defaults()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _http_registry(uri: str) -> tuple[list[str], list[AliasTarget]]:
    """The same through MLflow's client (the toolkit's registry helpers, short timeouts)."""
    from . import registry

    with _pointed_at(uri):
        names = registry.model_names()
        targets: list[AliasTarget] = []
        for name in names:
            for alias, version in sorted((registry.get_model(name).aliases or {}).items()):
                with registry.translated(f"find the artifacts of {name}/{version}"):
                    location = registry.client().get_model_version_download_uri(name, str(version))
                targets.append(AliasTarget(name, alias, int(version), location))
    return names, targets


def check_registry(names: Sequence[str], targets: Sequence[AliasTarget], model: str) -> list[Finding]:
    """Registered models present; ``model``'s production alias set (staging reported if missing)."""
    public = [name for name in names if not name.endswith(_INTERNAL_SUFFIX)]
    if not public:
        return [
            Finding(
                "models",
                "fail",
                "no registered models in this store (did training run without --register, or against another store?)",
                "python -m scripts.mlops train --register churn-classifier  (with the same MLFLOW_TRACKING_URI)",
            )
        ]
    findings = [Finding("models", "ok", f"registered: {', '.join(public)}")]
    if model not in public:
        findings.append(
            Finding(
                "models",
                "fail",
                f"no registered model {model!r}",
                f"register it (train --register {model}) or pass --model with one of {public}.",
            )
        )
        return findings
    set_here = {t.alias: t.version for t in targets if t.model == model}
    for alias in (*REQUIRED_ALIASES, *OPTIONAL_ALIASES):
        if alias in set_here:
            findings.append(Finding("aliases", "ok", f"{model}@{alias} -> version {set_here[alias]}"))
        else:
            status: Status = "fail" if alias in REQUIRED_ALIASES else "warn"
            findings.append(
                Finding(
                    "aliases",
                    status,
                    f"no version behind {model}@{alias} (aliases set: {sorted(set_here) or 'none'})",
                    f"python -m scripts.mlops promote --model {model} --version N --alias {alias}",
                )
            )
    return findings


def artifact_folder(location: str) -> Path | None:
    """The local folder of a ``file://`` (or plain path) artifact location; None for remote ones."""
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    if "://" not in location and not location.startswith("models:/") and location:
        return Path(location)
    return None


def check_artifacts(targets: Iterable[AliasTarget], model: str) -> list[Finding]:
    """The versions behind ``model``'s aliases still have their files (``MLmodel`` and the model)."""
    findings: list[Finding] = []
    for target in targets:
        if target.model != model:
            continue
        label = f"{model}/{target.version} (@{target.alias})"
        folder = artifact_folder(target.location)
        if folder is None:
            findings.append(Finding("artifacts", "skip", f"{label}: remote location {target.location}"))
        elif (folder / "MLmodel").is_file():
            findings.append(Finding("artifacts", "ok", f"{label}: {folder}"))
        else:
            findings.append(
                Finding(
                    "artifacts",
                    "fail",
                    f"{label}: no MLmodel in {folder}: a server for @{target.alias} never becomes healthy",
                    "restore the artifacts folder from a backup; or retrain, register a new version and point "
                    f"@{target.alias} at it. Do not delete the version's registry entry to hide it.",
                )
            )
    return findings


def check_port(port: int) -> Finding:
    """Whether TCP ``port`` on 127.0.0.1 is free; if not, which process listens on it."""
    owners = procs.port_owners(port)
    if not owners and not procs.port_in_use(port):
        return Finding("port", "ok", f"port {port} is free")
    who = "; ".join(str(p) for p in owners) or "a process this user cannot see"
    pid = str(owners[0].pid) if len(owners) == 1 else "PID"
    return Finding(
        "port",
        "fail",
        f"port {port} is in use by {who}",
        f"if it is your old server, stop that one process: `kill {pid}`; otherwise use another port (--port 0 picks "
        'a free one). Never `pkill -f "mlflow server"`: it also kills every other matching process.',
    )


def read_baseline(path: Path) -> dict[str, Any]:
    """The baseline document (``eval_baseline.json``)."""
    return dict(json.loads(path.read_text()))


def check_eval_hash(baseline: dict[str, Any], eval_file: Path) -> Finding:
    """The evaluation file is the one the baseline was measured on (same SHA-256)."""
    from .datafiles import fingerprint

    expected = baseline.get("eval_set_hash")
    if not eval_file.is_file():
        return Finding(
            "eval_hash",
            "fail",
            f"evaluation file {eval_file} does not exist",
            "python -m scripts.mlops data (writes the frozen churn_eval.csv), or pass --eval FILE.",
        )
    found = fingerprint(eval_file)
    if found == expected:
        return Finding("eval_hash", "ok", f"{eval_file.name} matches the baseline ({found[:19]}...)")
    return Finding(
        "eval_hash",
        "fail",
        f"{eval_file} is {found[:19]}..., the baseline was measured on {str(expected)[:19]}...: "
        "the two accuracies are not comparable",
        "evaluate on the frozen evaluation set (python -m scripts.mlops data), or refresh the baseline deliberately "
        "(make baseline) if the evaluation set changed on purpose.",
    )


def label_set(path: Path, column: str) -> set[str]:
    """The distinct values of ``column`` in a CSV file (read with the csv module: no pandas)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise KeyError(column)
        return {row[column] for row in reader}


def check_labels(path: Path, expected: Sequence[str], column: str) -> Finding:
    """The label column of a data file uses exactly the expected spellings."""
    if not path.is_file():
        return Finding("labels", "fail", f"data file {path} does not exist", "check the path given to --data.")
    try:
        found = label_set(path, column)
    except KeyError:
        return Finding("labels", "fail", f"{path.name} has no {column!r} column", "is this a churn data file?")
    unknown = sorted(found - set(expected))
    if not unknown:
        return Finding("labels", "ok", f"{path.name}: labels {sorted(found)} within {sorted(expected)}")
    return Finding(
        "labels",
        "fail",
        f"{path.name}: labels {sorted(found)} are not {sorted(expected)} (unknown: {unknown})",
        "normalise the labels when the batch is loaded (strip, lower-case, map synonyms to 'no'/'yes'); do not edit "
        "the baseline's labels to match the new spelling.",
    )


# --- running it -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What to examine (the command's arguments)."""

    workspace: str | None = None
    tracking_uri: str | None = None
    model: str = DEFAULT_MODEL
    port: int | None = None
    data: Path | None = None
    baseline: Path | None = None
    eval_file: Path | None = None
    cwd: Path | None = None  # the folder whose MLflow default is examined (default: the current one)


def _store_findings(target: Target, model: str) -> list[Finding]:
    """Reachability, then (only if it answered) schema, lock, registry and artifacts."""
    findings = [check_reachable(target)]
    if findings[0].status != "ok":
        return findings
    db = target.sqlite_path
    try:
        if db is not None:
            lock = check_lock(db)
            findings.append(lock)
            if lock.failed:
                return findings  # a locked database cannot be read either: the lock is the problem
            schema = check_schema(db)
            findings.append(schema)
            if schema.failed:
                return findings  # MLflow refuses it, and its tables may not be the ones read below
            names, targets = sqlite_registry(db)
        else:
            names, targets = _http_registry(target.uri)
    except Exception as exc:  # noqa: BLE001 - SQLite, MLflow or network: report, never crash
        from .errors import MlopsError

        if isinstance(exc, MlopsError):
            problem, fix = exc.problem, exc.fix
        else:
            problem, fix = f"{type(exc).__name__}: {str(exc)[:300]}", None
        return [*findings, Finding("models", "fail", f"cannot read the registry: {problem}", fix)]
    return [*findings, *check_registry(names, targets, model), *check_artifacts(targets, model)]


def _file_findings(options: Options, target: Target) -> list[Finding]:
    from . import datafiles

    findings: list[Finding] = []
    baseline: dict[str, Any] | None = None
    if options.baseline is not None:
        try:
            baseline = read_baseline(options.baseline)
        except (OSError, ValueError) as exc:
            findings.append(Finding("eval_hash", "fail", f"cannot read the baseline {options.baseline}: {exc}"))
    if baseline is not None:
        eval_file = options.eval_file
        if eval_file is None:
            folder = target.workspace if target.workspace is not None else Path(".")
            eval_file = folder / "data" / datafiles.FILENAMES["eval"]
        findings.append(check_eval_hash(baseline, eval_file))
    if options.data is not None:
        expected = baseline.get("labels", datafiles.LABELS) if baseline is not None else datafiles.LABELS
        findings.append(check_labels(options.data, list(expected), datafiles.LABEL))
    return findings


def diagnose(options: Options) -> Report:
    """Run every check that applies to ``options``; never raises for a broken store."""
    start = time.monotonic()
    target = resolve_target(options.workspace, options.tracking_uri, options.cwd)
    report = Report(target)
    report.findings += check_store(target)
    if not any(f.failed for f in report["store"]):
        report.findings += _store_findings(target, options.model)
    if options.port is not None:
        report.findings.append(check_port(options.port))
    report.findings += _file_findings(options, target)
    report.seconds = time.monotonic() - start
    return report


def to_json(report: Report) -> dict[str, Any]:
    """The report as plain data (for notebooks, graders and CI logs)."""
    return {
        "uri": report.target.uri,
        "source": report.target.source,
        "healthy": report.healthy,
        "failed": report.failed_checks(),
        "seconds": round(report.seconds, 3),
        "findings": [{"check": f.check, "status": f.status, "detail": f.detail, "fix": f.fix} for f in report.findings],
    }


def render(report: Report) -> str:
    """The ✓/✗ table: one line per finding, the fix indented under each problem."""
    width = max([len(f.check) for f in report.findings] + [5])
    lines = [f"doctor: {report.target.uri}  ({report.target.source})", ""]
    for finding in report.findings:
        lines.append(f"{MARKS[finding.status]} {finding.check:<{width}}  {finding.detail}")
        if finding.fix and finding.status in ("fail", "warn"):
            lines.append(f"  {'':<{width}}  fix: {finding.fix}")
    failed = report.failed_checks()
    verdict = "healthy" if not failed else f"{len(failed)} check(s) failed: {', '.join(failed)}"
    lines += ["", f"{verdict} ({report.seconds:.2f} s)"]
    return "\n".join(lines)
