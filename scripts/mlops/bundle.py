"""Release bundles: what a promoted model version ships with, cut from the registry and its run.

A bundle is a folder a consumer (or a reviewer) receives instead of registry access::

    model/             the registered version's files, as MLflow stores them
    params.json        the run's parameters, as recorded
    metrics.json       the run's metrics, as recorded
    evaluation.json    the run's per-segment evaluation on the frozen set, as recorded
    gate.json          the gate that allowed it: policy, verdict, and the baseline it compared with
    lock.json          evidence linking the artifact to the pipeline state: run id, data
                       fingerprints, code revision, environment, the model files' SHA-256
    manifest.json      the registry reference by *version*, the metric's definition, and every
                       other file with its SHA-256

:func:`cut` produces one; nothing in it is typed by hand. :mod:`scripts.mlops.audit` checks one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from .errors import MlopsError
from .files import write_atomic

MANIFEST = "manifest.json"
MODEL_DIR = "model"
EVIDENCE_FILES = ("params.json", "metrics.json", "evaluation.json", "gate.json", "lock.json")
REVIEW_NOTE = "review_note.md"
#: The run tag in which training records the code revision (``train.code_sha256()``).
CODE_TAG = "mlops.code_sha256"
METRIC = "accuracy"
METRIC_DEFINITION = (
    "accuracy: the share of rows whose predicted churn label ('yes'/'no') equals the true label, "
    "on the frozen evaluation set churn_eval.csv, overall and per customer segment"
)


def file_sha256(path: str | Path) -> str:
    """``sha256:<hex>`` of one file's bytes."""
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def bundle_files(folder: str | Path) -> dict[str, str]:
    """Every file below ``folder`` but the manifest, by relative POSIX path, with its SHA-256."""
    root = Path(folder)
    return {
        path.relative_to(root).as_posix(): file_sha256(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST
    }


def _write_json(path: Path, document: Any) -> None:
    write_atomic(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


def write_manifest(folder: str | Path, reference: dict[str, Any]) -> dict[str, Any]:
    """(Re)write ``manifest.json`` from the files now in ``folder`` and the registry reference."""
    root = Path(folder)
    manifest = {**reference, "files": bundle_files(root)}
    _write_json(root / MANIFEST, manifest)
    return manifest


def read_json(path: Path) -> Any:
    """A bundle file's JSON, or MlopsError naming the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MlopsError(f"the bundle has no {path.name}", "cut the bundle again with `bundle cut`") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MlopsError(f"{path.name} is not valid JSON: {exc}", "cut the bundle again; never edit it") from None


def requirements(model_dir: Path) -> list[str]:
    """The pinned environment the model was logged with (``requirements.txt`` of its files)."""
    path = model_dir / "requirements.txt"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def cut(
    model: str,
    version: int,
    dest: str | Path,
    *,
    baseline_path: str | Path,
    alias: str = "production",
    tolerance: float | None = None,
) -> Path:
    """Cut the release bundle of ``models:/model/version`` into the new folder ``dest``.

    Refuses a version that ``alias`` does not point at (a bundle describes what is promoted), and
    a ``dest`` that already exists (a bundle is never cut over another).
    """
    import mlflow

    from . import gate, registry
    from .compare_baseline import compare
    from .release import canonical_sha

    dest = Path(dest)
    if dest.exists():
        raise MlopsError(f"{dest} already exists", "cut each bundle into a new folder; keep old bundles as they are")
    info = registry.get_version(model, int(version))
    current = registry.current_version(model, alias)
    if current != info.version:
        raise MlopsError(
            f"{model}@{alias} points at version {current}, not {info.version}",
            f"a bundle describes the promoted version: cut version {current}, or promote {info.version} first",
        )
    policy_tolerance = gate.DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    client = registry.client()
    with registry.translated(f"read the run of {model} version {info.version}"):
        run = client.get_run(info.run_id)
        version_tags = dict(client.get_model_version(model, str(info.version)).tags or {})
    scratch = dest.with_name(f".{dest.name}.cutting")
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    try:
        with registry.translated(f"download {model} version {info.version}"):
            mlflow.artifacts.download_artifacts(
                artifact_uri=registry.model_uri(model, info.version), dst_path=str(scratch / MODEL_DIR)
            )
            evaluation_file = mlflow.artifacts.download_artifacts(
                run_id=info.run_id, artifact_path="evaluation.json", dst_path=str(scratch / ".run")
            )
        evaluation = json.loads(Path(evaluation_file).read_text())
        shutil.rmtree(scratch / ".run")
        baseline = gate.load_evaluation(baseline_path, "baseline")
        report = compare(evaluation, baseline, tolerance=policy_tolerance)
        params = dict(run.data.params)
        _write_json(scratch / "params.json", params)
        _write_json(scratch / "metrics.json", dict(run.data.metrics))
        _write_json(scratch / "evaluation.json", evaluation)
        _write_json(
            scratch / "gate.json",
            {
                "policy": {"tolerance": policy_tolerance, "min_slice_size": gate.DEFAULT_MIN_SLICE_SIZE},
                "passed": report.passed,
                "failed": sorted(report.failed_names()),
                "baseline": {"model": baseline.get("model"), "version": baseline.get("version")},
                "baseline_sha256": file_sha256(baseline_path),
                "registry_verdict": version_tags.get("gate.verdict"),
            },
        )
        _write_json(
            scratch / "lock.json",
            {
                "run_id": info.run_id,
                "data": {key: params.get(key) for key in ("train_file", "train_sha256", "eval_file", "eval_sha256")},
                "code_sha256": run.data.tags.get(CODE_TAG),
                "environment": requirements(scratch / MODEL_DIR),
                "model_sha256": canonical_sha(scratch / MODEL_DIR),
            },
        )
        write_manifest(
            scratch,
            {
                "model": model,
                "version": info.version,
                "alias": alias,
                "registry_uri": registry.model_uri(model, info.version),
                "run_id": info.run_id,
                "metric": {"name": METRIC, "definition": METRIC_DEFINITION},
            },
        )
        scratch.rename(dest)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return dest
