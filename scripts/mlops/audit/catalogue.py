"""Deceptive bundles: each takes a good bundle and makes it wrong in one way that still looks orderly.

Like Lab 03's injection catalogue, every case names the audit checks it must fail; a test proves
each verdict. Most cases keep the manifest consistent (the deception is in the evidence, not in a
stale hash), because that is what a careful forger — or a hurried person "fixing" a bundle — does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import bundle


@dataclass(frozen=True)
class BundleContext:
    """What the cases build from: the model, and two runs' versions besides the promoted one."""

    model: str
    promoted: int  # the version the good bundle describes (behind @production)
    other: int  # another version of the same model (a different run)
    gate_failed: int  # a version the gate refused (tagged gate.verdict = fail)


def _load(root: Path, name: str) -> Any:
    return json.loads((root / name).read_text())


def _dump(root: Path, name: str, document: Any) -> None:
    (root / name).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _reseal(root: Path) -> None:
    """Rewrite the manifest over the files as they are now: the bundle looks consistent again."""
    manifest = _load(root, bundle.MANIFEST)
    manifest.pop("files")
    bundle.write_manifest(root, manifest)


def _run_of(model: str, version: int) -> Any:
    from .. import registry

    return registry.client().get_run(registry.get_version(model, version).run_id)


def metrics_from_other_run(root: Path, ctx: BundleContext) -> None:
    """metrics.json copied from another (better-looking) run; everything else genuine."""
    _dump(root, "metrics.json", dict(_run_of(ctx.model, ctx.other).data.metrics))
    _reseal(root)


def params_from_other_run(root: Path, ctx: BundleContext) -> None:
    _dump(root, "params.json", dict(_run_of(ctx.model, ctx.other).data.params))
    _reseal(root)


def manifest_omits_model(root: Path, ctx: BundleContext) -> None:
    manifest = _load(root, bundle.MANIFEST)
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(f"{bundle.MODEL_DIR}/")}
    _dump(root, bundle.MANIFEST, manifest)


def debug_files_shipped(root: Path, ctx: BundleContext) -> None:
    (root / "debug_predictions.log").write_text("row 17: p=0.51 -> yes\n")
    (root / ".env").write_text("MLFLOW_TRACKING_TOKEN=not-a-real-token\n")
    _reseal(root)  # listed in the manifest: the manifest is complete, the content is not supported


def registry_points_at_latest(root: Path, ctx: BundleContext) -> None:
    manifest = _load(root, bundle.MANIFEST)
    manifest["version"] = "latest"
    manifest["registry_uri"] = f"models:/{ctx.model}/latest"
    _dump(root, bundle.MANIFEST, manifest)


def consumer_uses_internal_path(root: Path, ctx: BundleContext) -> None:
    manifest = _load(root, bundle.MANIFEST)
    manifest["entrypoints"] = {"model": "file:///home/ci/.mlops/artifacts/1/models/m-0a1b/artifacts"}
    _dump(root, bundle.MANIFEST, manifest)


def lock_of_other_data(root: Path, ctx: BundleContext) -> None:
    lock = _load(root, "lock.json")
    lock["data"]["train_file"] = "churn_v2.csv"
    lock["data"]["train_sha256"] = _run_of(ctx.model, ctx.other).data.params.get("train_sha256")
    _dump(root, "lock.json", lock)
    _reseal(root)


def gate_failed_promoted_by_hand(root: Path, ctx: BundleContext) -> None:
    """The seed's incident: a version the gate refused is moved to production by hand, then bundled
    with every file genuine. Leaves @production on that version, as the incident did."""
    from .. import registry
    from ..baseline_refresh import BASELINE_PATH

    registry.set_alias(ctx.model, "production", ctx.gate_failed)
    shutil.rmtree(root)
    bundle.cut(ctx.model, ctx.gate_failed, root, baseline_path=BASELINE_PATH)


def threshold_lowered(root: Path, ctx: BundleContext) -> None:
    record = _load(root, "gate.json")
    record["policy"]["tolerance"] = 0.1
    _dump(root, "gate.json", record)
    _reseal(root)


def number_edited_to_look_right(root: Path, ctx: BundleContext) -> None:
    evaluation = _load(root, "evaluation.json")
    evaluation["overall"]["accuracy"] = round(evaluation["overall"]["accuracy"] + 0.01, 4)
    _dump(root, "evaluation.json", evaluation)
    _reseal(root)


def manifest_hash_of_other_file(root: Path, ctx: BundleContext) -> None:
    manifest = _load(root, bundle.MANIFEST)
    manifest["files"]["metrics.json"] = manifest["files"]["params.json"]
    _dump(root, bundle.MANIFEST, manifest)


def file_added_after_cut(root: Path, ctx: BundleContext) -> None:
    (root / "model" / "calibration.json").write_text('{"shift": 0.03}\n')


def alias_moved_after_cut(root: Path, ctx: BundleContext) -> None:
    from .. import registry

    registry.set_alias(ctx.model, "production", ctx.other)


def metric_meaning_changed(root: Path, ctx: BundleContext) -> None:
    manifest = _load(root, bundle.MANIFEST)
    manifest["metric"]["definition"] = "accuracy: balanced accuracy over the two labels"
    _dump(root, bundle.MANIFEST, manifest)


@dataclass(frozen=True)
class Deception:
    """One catalogue case: how it deceives, how to build it, and the checks that must catch it."""

    name: str
    description: str
    build: Callable[[Path, BundleContext], None]
    expected_failures: frozenset[str]


def _case(name: str, description: str, build: Callable[[Path, BundleContext], None], *fails: str) -> Deception:
    return Deception(name, description, build, frozenset(fails))


CATALOGUE: tuple[Deception, ...] = (
    _case(
        "metrics_from_other_run",
        "metrics.json comes from a different run than params.json",
        metrics_from_other_run,
        "metrics_match_run",
        "metrics_describe_model",
    ),
    _case("params_from_other_run", "params.json describes a different run", params_from_other_run, "params_match_run"),
    _case(
        "manifest_omits_model",
        "the manifest leaves out the promoted model's files",
        manifest_omits_model,
        "manifest_lists_files",
    ),
    _case(
        "debug_files_shipped",
        "debug output and a .env file ship to consumers, listed in the manifest",
        debug_files_shipped,
        "no_unsupported_files",
    ),
    _case(
        "registry_points_at_latest",
        "the registry reference is 'latest', not a version",
        registry_points_at_latest,
        "registry_reference",
        "alias_current",
        "lock_supports_artifact",
    ),
    _case(
        "consumer_uses_internal_path",
        "consumers are pointed at an internal artifact path",
        consumer_uses_internal_path,
        "consumer_paths",
    ),
    _case(
        "lock_of_other_data",
        "the lock's training-data fingerprint belongs to another run",
        lock_of_other_data,
        "lock_supports_artifact",
    ),
    _case(
        "gate_failed_promoted_by_hand",
        "a version the gate refused, promoted by hand, bundled properly",
        gate_failed_promoted_by_hand,
        "gate_allowed",
    ),
    _case("threshold_lowered", "the bundle's gate record uses a looser tolerance", threshold_lowered, "gate_allowed"),
    _case(
        "number_edited_to_look_right",
        "evaluation.json's overall accuracy edited upwards",
        number_edited_to_look_right,
        "metrics_describe_model",
    ),
    _case(
        "manifest_hash_of_other_file",
        "the manifest's hash for metrics.json is another file's",
        manifest_hash_of_other_file,
        "manifest_lists_files",
    ),
    _case(
        "file_added_after_cut",
        "a file appears in the model folder after the bundle was cut",
        file_added_after_cut,
        "manifest_lists_files",
        "lock_supports_artifact",
    ),
    _case(
        "alias_moved_after_cut",
        "@production moved to another version after the bundle was cut",
        alias_moved_after_cut,
        "alias_current",
    ),
    _case(
        "metric_meaning_changed",
        "the metric's definition changed without a review note",
        metric_meaning_changed,
        "metric_meaning",
    ),
)


#: The bundles Lab 06 hands its reviewers, by the name they see: each a catalogue case applied to
#: a good bundle (the reviewer's job is to find out which).
REVIEW_SET = {"A": "metrics_from_other_run", "B": "debug_files_shipped", "C": "number_edited_to_look_right"}


def review_set(ctx: BundleContext, good: Path, folder: Path) -> dict[str, Path]:
    """Copies of the good bundle made deceptive as :data:`REVIEW_SET` says, under ``folder``."""
    cases = {case.name: case for case in CATALOGUE}
    made: dict[str, Path] = {}
    for label, name in REVIEW_SET.items():
        target = folder / label
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(good, target)
        cases[name].build(target, ctx)
        made[label] = target
    return made
