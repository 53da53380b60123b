"""Regenerate (or verify) the committed ``eval_baseline.json`` from scratch.

    python -m scripts.mlops baseline-refresh            # rewrite eval_baseline.json
    python -m scripts.mlops baseline-refresh --check    # exit 1 if it would change

The recipe is the one the labs follow, so the committed file is exactly what a learner's
production model scores. It is equivalent to these shell steps::

    python -m scripts.mlops --workspace baseline-refresh data
    python -m scripts.mlops --workspace baseline-refresh train --model logreg --seed 42 \\
        --register churn-classifier                           # version 1, trained on v1
    # point the alias: MlflowClient().set_registered_model_alias("churn-classifier", "production", "1")
    python -m scripts.mlops --workspace baseline-refresh baseline --model churn-classifier \\
        --alias production --data .mlops/baseline-refresh/data/churn_eval.csv --out eval_baseline.json

except that this module starts from an empty workspace every time (so the version is 1)
and computes the last step with the same function as the ``baseline`` command.
"""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from pathlib import Path

from .errors import MlopsError

REPO = Path(__file__).resolve().parents[2]
BASELINE_PATH = REPO / "eval_baseline.json"
MODEL_NAME = "churn-classifier"
ALIAS = "production"
WORKSPACE = "baseline-refresh"


def regenerate(out: str | Path = BASELINE_PATH) -> Path:
    """Fresh workspace, logreg seed 42 on v1 as ``churn-classifier`` v1 @production, then the baseline.

    The workspace is ``.mlops/baseline-refresh`` below the current folder (or below
    ``MLOPS_WORKSPACE_ROOT``). Returns ``out``.
    """
    from . import data, evaluate, gate, registry, train
    from .workspace import open_workspace

    if os.environ.get("MLFLOW_TRACKING_URI"):
        raise MlopsError(
            "MLFLOW_TRACKING_URI is set, so the baseline would be built on a shared tracking server",
            "unset MLFLOW_TRACKING_URI: the baseline must come from a fresh, embedded registry.",
        )
    ws = open_workspace(WORKSPACE, fresh=True)
    paths = data.write_datasets(ws.data_dir)
    result = train.train_and_log(
        paths["v1"],
        paths["eval"],
        train.TrainConfig(model="logreg", seed=42),
        register=MODEL_NAME,
        run_name="baseline-logreg-seed42",
    )
    if result.version != 1:
        raise MlopsError(
            f"expected a fresh registry to give version 1, got {result.version}", f"delete {ws.root} and run again."
        )
    registry.set_alias(MODEL_NAME, ALIAS, result.version)
    evaluate.write_json(gate.make_baseline(MODEL_NAME, ALIAS, paths["eval"]), out)
    return Path(out)


def stale_diff(path: str | Path) -> str:
    """A unified diff from the file at ``path`` to a freshly regenerated baseline ("" when equal)."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = regenerate(Path(scratch) / "eval_baseline.json").read_text()
    current = Path(path).read_text() if Path(path).is_file() else ""
    if fresh == current:
        return ""
    return "".join(
        difflib.unified_diff(current.splitlines(True), fresh.splitlines(True), f"{path} (committed)", "regenerated")
    )


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["baseline-refresh", *sys.argv[1:]]))
