"""Audit a release bundle by evidence: one check per review question, failing closed.

Each check answers one question a reviewer asks of a bundle (:data:`QUESTIONS`) from the bundle's
files, the registry and a re-evaluation of the bundled model on the frozen evaluation set. A
check that cannot find its evidence fails with the reason: missing evidence is a rejection, not
a pass. Every failure names its repair: regenerate from the recorded state, update the manifest,
remove unsupported files, publish a named version, or reject.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import bundle
from ..errors import MlopsError
from . import reeval

TOL = 1e-9
UNSUPPORTED = (
    "*.log",
    "*.pyc",
    ".env",
    ".env.*",
    "*/.env",
    ".ipynb_checkpoints/*",
    "*/.ipynb_checkpoints/*",
    "__pycache__/*",
    "*/__pycache__/*",
    "debug*",
    "*/debug*",
    "*.ipynb",
    ".DS_Store",
)
INTERNAL_PATH = re.compile(r"(^file:|^/|mlruns|mlartifacts|\.mlops|\\\\|^[A-Za-z]:)")
REPAIRS = {
    "regenerate": "regenerate the bundle from the recorded state (`bundle cut`), never by editing files",
    "manifest": "cut the bundle again so the manifest lists exactly its files (`bundle cut`)",
    "remove": "remove unsupported files before cutting; consumers get only what the manifest supports",
    "version": "publish a named version: reference models:/NAME/VERSION, never 'latest' or a path",
    "reject": "reject the promotion: the evidence cannot support it",
    "rerun": "re-run the declared pipeline so that the run records this evidence, then cut the bundle again",
}


@dataclass(frozen=True)
class Finding:
    """One audit check's answer."""

    name: str
    question: str
    passed: bool
    reason: str
    repair: str = ""


@dataclass
class AuditReport:
    """Every check's finding; the bundle is accepted only if all passed."""

    bundle: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return bool(self.findings) and all(finding.passed for finding in self.findings)

    def failed_names(self) -> set[str]:
        return {finding.name for finding in self.findings if not finding.passed}

    def markdown(self) -> str:
        """The review report: the verdict, then one row per question."""
        verdict = "ACCEPT" if self.accepted else "REJECT"
        lines = [
            f"### Release audit: {verdict} ({self.bundle.name})",
            "",
            "| check | question | verdict | evidence | repair |",
            "|---|---|---|---|---|",
        ]
        for finding in self.findings:
            cells = [finding.name, finding.question, "pass" if finding.passed else "**FAIL**", finding.reason]
            cells.append(finding.repair or "-")
            lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
        return "\n".join(lines) + "\n"


@dataclass
class Context:
    """What the checks share: the bundle's files (read once) and the registry's view of it."""

    root: Path
    manifest: dict[str, Any]
    files: dict[str, Any] = field(default_factory=dict)  # parsed evidence files (None if unreadable)
    problems: dict[str, str] = field(default_factory=dict)  # why an evidence file is unreadable
    pending: reeval.Pending | None = None  # the re-evaluation, when it runs in a parallel process

    def evidence(self, name: str) -> Any:
        if name not in self.files:
            raise _Missing(self.problems.get(name, f"{name} is missing"))
        return self.files[name]


class _Missing(Exception):
    """Evidence a check needs is absent or unreadable: the check fails with this reason."""


def open_bundle(folder: str | Path) -> Context:
    """Read a bundle's manifest (MlopsError if there is none: not a bundle) and evidence files."""
    root = Path(folder)
    if not root.is_dir():
        raise MlopsError(f"{root} is not a folder", "pass the folder `bundle cut` produced")
    manifest = bundle.read_json(root / bundle.MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise MlopsError(f"{root / bundle.MANIFEST} is not a bundle manifest", "cut the bundle with `bundle cut`")
    context = Context(root, manifest)
    for name in bundle.EVIDENCE_FILES:
        try:
            context.files[name] = bundle.read_json(root / name)
        except MlopsError as exc:
            context.problems[name] = str(exc).splitlines()[0]
    return context


# --------------------------------------------------------------------------------------
# The checks, one per review question
# --------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isfinite(float(a)) and abs(float(a) - float(b)) <= TOL
    return bool(a == b)


def _diff(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    keys = sorted(set(found) | set(expected))
    differing = [k for k in keys if k not in found or k not in expected or not _same(found[k], expected[k])]
    shown = ", ".join(f"{k}: {found.get(k, '(missing)')!r} vs {expected.get(k, '(missing)')!r}" for k in differing[:3])
    more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
    return f"{len(differing)} differ ({shown}{more})"


def check_manifest_lists_files(ctx: Context) -> tuple[bool, str, str]:
    listed = ctx.manifest["files"]
    present = bundle.bundle_files(ctx.root)
    extra = sorted(set(present) - set(listed))
    missing = sorted(set(listed) - set(present))
    changed = sorted(name for name in set(listed) & set(present) if listed[name] != present[name])
    model_listed = any(name.startswith(f"{bundle.MODEL_DIR}/") for name in listed)
    if extra or missing or changed or not model_listed:
        parts = []
        if not model_listed:
            parts.append("the manifest lists none of the model's files")
        if extra:
            parts.append(f"not in the manifest: {extra[:4]} (added after the bundle was cut?)")
        if missing:
            parts.append(f"listed but absent: {missing[:4]}")
        if changed:
            parts.append(f"SHA-256 differs from the manifest: {changed[:4]}")
        return False, "; ".join(parts), "manifest"
    return True, f"{len(listed)} files, each present with the SHA-256 the manifest lists", ""


def check_no_unsupported_files(ctx: Context) -> tuple[bool, str, str]:
    names = sorted(set(ctx.manifest["files"]) | set(bundle.bundle_files(ctx.root)))
    bad = [name for name in names if any(fnmatch.fnmatch(name, pattern) for pattern in UNSUPPORTED)]
    if bad:
        return False, f"unsupported files would reach consumers: {bad[:5]}", "remove"
    return True, "no debug files, logs, notebooks, caches or .env files", ""


def check_registry_reference(ctx: Context) -> tuple[bool, str, str]:
    from .. import registry

    model, version = ctx.manifest.get("model"), ctx.manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return False, f"the manifest names version {version!r}, not a version number", "version"
    uri = ctx.manifest.get("registry_uri")
    if uri != registry.model_uri(str(model), version):
        return False, f"registry_uri {uri!r} is not models:/{model}/{version}", "version"
    info = registry.get_version(str(model), version)
    if info.run_id != ctx.manifest.get("run_id"):
        return False, f"version {version} was produced by run {info.run_id}, the manifest says another run", "reject"
    return True, f"{uri}, produced by the run the manifest names", ""


def check_alias_current(ctx: Context) -> tuple[bool, str, str]:
    from .. import registry

    model, version, alias = ctx.manifest.get("model"), ctx.manifest.get("version"), ctx.manifest.get("alias")
    if not isinstance(alias, str) or not alias:
        return False, "the manifest names no alias: what was promoted is unknown", "reject"
    current = registry.current_version(str(model), alias)
    if current != version:
        return False, f"{model}@{alias} now points at version {current}, the bundle describes {version}", "reject"
    return True, f"{model}@{alias} still points at version {version}", ""


def _run(ctx: Context) -> Any:
    from .. import registry

    with registry.translated(f"read run {ctx.manifest.get('run_id')}"):
        return registry.client().get_run(str(ctx.manifest.get("run_id")))


def check_params_match_run(ctx: Context) -> tuple[bool, str, str]:
    found = ctx.evidence("params.json")
    recorded = dict(_run(ctx).data.params)
    if not isinstance(found, dict) or found != recorded:
        detail = _diff(found, recorded) if isinstance(found, dict) else "not a mapping"
        return False, f"params.json is not the params the run recorded: {detail}", "regenerate"
    return True, f"the {len(found)} params the run recorded", ""


def check_metrics_match_run(ctx: Context) -> tuple[bool, str, str]:
    found = ctx.evidence("metrics.json")
    recorded = dict(_run(ctx).data.metrics)
    if not isinstance(found, dict) or not _same(found, recorded):
        detail = _diff(found, recorded) if isinstance(found, dict) else "not a mapping"
        return False, f"metrics.json is not what the run recorded: {detail}", "regenerate"
    return True, f"the {len(found)} metrics the run recorded", ""


def _consumers_can_load(model_dir: Path) -> None:
    """RestoreError unless MLflow reads the MLmodel file and finds the flavor consumers load."""
    from mlflow.models import Model

    try:
        flavors = Model.load(str(model_dir)).flavors
    except Exception as exc:  # noqa: BLE001 - a missing or malformed MLmodel file
        raise reeval.RestoreError(f"MLflow cannot read the model's MLmodel file: {exc}") from None
    if "python_function" not in flavors:
        raise reeval.RestoreError(f"the MLmodel file has no python_function flavor (only {sorted(flavors)})")


def check_metrics_describe_model(ctx: Context) -> tuple[bool, str, str]:
    from ..datafiles import FROZEN_EVAL_SHA256 as frozen

    evaluation = ctx.evidence("evaluation.json")
    metrics = ctx.evidence("metrics.json")
    model_dir = (ctx.root / bundle.MODEL_DIR).resolve()
    try:
        _consumers_can_load(model_dir)
        scored = ctx.pending.result() if ctx.pending is not None else reeval.reevaluate(model_dir)
    except reeval.RestoreError as exc:
        return False, f"the bundled model cannot be restored: {str(exc).splitlines()[0]}", "reject"
    if scored.get("eval_set_hash") != frozen:
        return False, "the re-evaluation did not run on the frozen evaluation set", "reject"
    if not isinstance(evaluation, dict) or evaluation.get("eval_set_hash") != frozen:
        return False, "evaluation.json was not computed on the frozen evaluation set", "regenerate"
    claimed = {"overall": evaluation.get("overall"), "buckets": evaluation.get("buckets")}
    if not _same(claimed, {"overall": scored["overall"], "buckets": scored["buckets"]}):
        return (
            False,
            (
                f"re-evaluating the bundled model gives overall accuracy {scored['overall']['accuracy']:.4f}; "
                f"evaluation.json claims {_fmt(claimed, 'overall')}"
            ),
            "regenerate",
        )
    if not isinstance(metrics, dict) or not _same(metrics.get(bundle.METRIC), scored["overall"]["accuracy"]):
        return (
            False,
            (
                f"metrics.json says {bundle.METRIC} {metrics.get(bundle.METRIC) if isinstance(metrics, dict) else None!r}; "
                f"the bundled model scores {scored['overall']['accuracy']:.4f}"
            ),
            "regenerate",
        )
    return True, f"re-evaluated on the frozen set: {bundle.METRIC} {scored['overall']['accuracy']:.4f}, as claimed", ""


def _fmt(claimed: Mapping[str, Any], key: str) -> str:
    value = claimed.get(key)
    accuracy = value.get("accuracy") if isinstance(value, dict) else None
    return f"{accuracy:.4f}" if isinstance(accuracy, float) else repr(accuracy)


def check_lock_supports_artifact(ctx: Context) -> tuple[bool, str, str]:
    from ..release import canonical_sha, model_sha

    lock = ctx.evidence("lock.json")
    if not isinstance(lock, dict):
        return False, "lock.json is not a mapping", "regenerate"
    run = _run(ctx)
    problems = []
    bundled = canonical_sha(ctx.root / bundle.MODEL_DIR)
    if lock.get("model_sha256") != bundled:
        problems.append("the lock's model SHA-256 is not the bundled model's")
    version = ctx.manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        problems.append(f"no version number ({version!r}) to compare the registered files with")
    elif lock.get("model_sha256") != model_sha(str(ctx.manifest.get("model")), version):
        problems.append("the registered version's files differ from the lock's")
    if lock.get("run_id") != ctx.manifest.get("run_id"):
        problems.append("the lock names another run")
    recorded_data = {
        key: run.data.params.get(key) for key in ("train_file", "train_sha256", "eval_file", "eval_sha256")
    }
    code = run.data.tags.get(bundle.CODE_TAG)
    unrecorded = [
        what
        for what, absent in (("data fingerprints", None in recorded_data.values()), ("code revision", not code))
        if absent
    ]
    if unrecorded:
        return (
            False,
            f"the run never recorded its {' and '.join(unrecorded)}: nothing links the artifact to them",
            "rerun",
        )
    if lock.get("data") != recorded_data:
        problems.append("the data fingerprints are not the ones the run recorded")
    if lock.get("code_sha256") != code:
        problems.append("the code revision is not the one the run recorded")
    environment = bundle.requirements(ctx.root / bundle.MODEL_DIR)
    if not environment or lock.get("environment") != environment:
        problems.append("the environment is missing or not the model's pinned requirements")
    if problems:
        return False, "; ".join(problems), "regenerate"
    return True, "model files, run, data fingerprints, code revision and environment all match", ""


def check_gate_allowed(ctx: Context) -> tuple[bool, str, str]:
    from .. import gate
    from ..baseline_refresh import BASELINE_PATH
    from ..compare_baseline import compare

    record = ctx.evidence("gate.json")
    evaluation = ctx.evidence("evaluation.json")
    if not isinstance(record, dict) or not isinstance(record.get("policy"), dict):
        return False, "gate.json records no gate policy", "reject"
    tolerance = record["policy"].get("tolerance")
    if not isinstance(tolerance, (int, float)) or tolerance > gate.DEFAULT_TOLERANCE + TOL:
        return (
            False,
            (f"the bundle's gate used tolerance {tolerance!r}; the project's policy is {gate.DEFAULT_TOLERANCE}"),
            "reject",
        )
    if record.get("registry_verdict") == "fail":
        return False, "the version is tagged gate.verdict = fail: it was promoted past a failed gate", "reject"
    baseline = gate.load_evaluation(BASELINE_PATH, "baseline")
    report = compare(evaluation, baseline, tolerance=gate.DEFAULT_TOLERANCE)
    if not report.passed or record.get("passed") is not True:
        failed = ", ".join(sorted(report.failed_names())) or "none"
        return False, f"the project's gate refuses this evaluation (failed: {failed})", "reject"
    return True, f"passes the project's gate (tolerance {gate.DEFAULT_TOLERANCE}) against the committed baseline", ""


def check_metric_meaning(ctx: Context) -> tuple[bool, str, str]:
    metric = ctx.manifest.get("metric")
    definition = metric.get("definition") if isinstance(metric, dict) else None
    if definition == bundle.METRIC_DEFINITION:
        return True, "the metric means what the baseline's metric means", ""
    note = ctx.root / bundle.REVIEW_NOTE
    if note.is_file() and bundle.REVIEW_NOTE in ctx.manifest["files"] and "metric" in note.read_text().lower():
        return True, "the metric's definition changed, and the listed review note explains it", ""
    return False, "the metric's definition changed and no review note (review_note.md) explains it", "reject"


def check_consumer_paths(ctx: Context) -> tuple[bool, str, str]:
    values = [ctx.manifest.get("registry_uri"), *(ctx.manifest.get("entrypoints") or {}).values()]
    internal = [value for value in values if isinstance(value, str) and INTERNAL_PATH.search(value)]
    if internal:
        return False, f"consumers would depend on internal paths: {internal[:3]}", "version"
    return True, "consumers reference the registry by name and version only", ""


Check = Callable[[Context], tuple[bool, str, str]]
QUESTIONS: dict[str, tuple[str, Check]] = {
    "manifest_lists_files": ("Does the manifest list every file, and only those?", check_manifest_lists_files),
    "no_unsupported_files": ("Does the bundle ship only supported files?", check_no_unsupported_files),
    "registry_reference": ("Is the model referenced by a named version?", check_registry_reference),
    "alias_current": ("Is this still the promoted state?", check_alias_current),
    "params_match_run": ("Do the params describe the run that produced the metrics?", check_params_match_run),
    "metrics_match_run": ("Were the metrics recorded by the same run?", check_metrics_match_run),
    "metrics_describe_model": ("Do the metrics describe the bundled model?", check_metrics_describe_model),
    "lock_supports_artifact": ("Does the lock evidence support the artifact?", check_lock_supports_artifact),
    "gate_allowed": ("Did the project's gate allow it?", check_gate_allowed),
    "metric_meaning": ("Did the metric's meaning change without a review note?", check_metric_meaning),
    "consumer_paths": ("Would consumers depend on internal paths?", check_consumer_paths),
}


def audit(folder: str | Path, *, pending: reeval.Pending | None = None) -> AuditReport:
    """Answer every review question for the bundle in ``folder`` (the registry must be reachable).

    ``pending`` is the model's re-evaluation already running in a second process
    (``reeval.Pending.start(folder)``): the command line's choice, which starts it before it
    imports MLflow. Without it the model is re-evaluated in this process. Either way it is
    stopped when the audit ends.
    """
    try:
        ctx = open_bundle(folder)
    except MlopsError:
        if pending is not None:
            pending.stop()
        raise
    ctx.pending = pending
    report = AuditReport(Path(folder))
    try:
        for name, (question, check) in QUESTIONS.items():
            try:
                passed, reason, repair = check(ctx)
            except _Missing as exc:
                passed, reason, repair = False, f"missing evidence: {exc}", "regenerate"
            except MlopsError as exc:
                passed, reason, repair = False, f"could not be checked: {str(exc).splitlines()[0]}", "reject"
            report.findings.append(
                Finding(name, question, passed, reason, REPAIRS.get(repair, "") if not passed else "")
            )
    finally:
        if ctx.pending is not None:
            ctx.pending.stop()
    return report


def to_json(report: AuditReport) -> str:
    """The report as JSON (for tools and the lab)."""
    return json.dumps(
        {
            "bundle": str(report.bundle),
            "accepted": report.accepted,
            "findings": [finding.__dict__ for finding in report.findings],
        },
        indent=2,
    )
