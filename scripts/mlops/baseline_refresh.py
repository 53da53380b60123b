"""Regenerate (or verify) the committed ``eval_baseline.json`` from scratch.

    python -m scripts.mlops.baseline_refresh            # rewrite eval_baseline.json
    python -m scripts.mlops.baseline_refresh --check    # exit 1 if it would change

The recipe is the one the labs follow, so the committed file is exactly what a learner's
production model scores. It is equivalent to these shell steps::

    python -m scripts.mlops --workspace baseline-refresh data
    python -m scripts.mlops --workspace baseline-refresh train --model logreg --seed 42 \\
        --register churn-classifier                           # version 1, trained on v1
    # point the alias: MlflowClient().set_registered_model_alias("churn-classifier", "production", "1")
    python -m scripts.mlops --workspace baseline-refresh baseline --model churn-classifier \\
        --alias production --data .mlops/baseline-refresh/data/churn_eval.csv --out eval_baseline.json

except that this module starts from an empty workspace every time (so the version is 1)
and runs the last step through the same ``baseline`` command.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

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
    from . import cli, data, registry, train
    from .workspace import open_workspace

    if os.environ.get("MLFLOW_TRACKING_URI"):
        raise MlopsError("MLFLOW_TRACKING_URI is set, so the baseline would be built on a shared tracking server",
                         "unset MLFLOW_TRACKING_URI: the baseline must come from a fresh, embedded registry.")
    ws = open_workspace(WORKSPACE, fresh=True)
    paths = data.write_datasets(ws.data_dir)
    result = train.train_and_log(paths["v1"], paths["eval"], train.TrainConfig(model="logreg", seed=42),
                                 register=MODEL_NAME, run_name="baseline-logreg-seed42")
    if result.version != 1:
        raise MlopsError(f"expected a fresh registry to give version 1, got {result.version}",
                         f"delete {ws.root} and run again.")
    registry.set_alias(MODEL_NAME, ALIAS, result.version)
    status = cli.main(["--workspace", WORKSPACE, "baseline", "--model", MODEL_NAME, "--alias", ALIAS,
                       "--data", str(paths["eval"]), "--out", str(out)])
    if status != 0:
        raise MlopsError(f"the baseline command failed with status {status}", "see the error printed above.")
    return Path(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.mlops.baseline_refresh",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(BASELINE_PATH), help="where to write (default: the committed file)")
    parser.add_argument("--check", action="store_true", help="only compare with --out; exit 1 if it would change")
    args = parser.parse_args(argv)
    try:
        if not args.check:
            regenerate(args.out)
            return 0
        with tempfile.TemporaryDirectory() as scratch:
            fresh = regenerate(Path(scratch) / "eval_baseline.json").read_text()
        current = Path(args.out).read_text() if Path(args.out).is_file() else ""
    except MlopsError as exc:
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return 1
    if fresh == current:
        print(f"{args.out} is up to date")
        return 0
    sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True),
                                               f"{args.out} (committed)", "regenerated"))
    print(f"\n{args.out} is stale: run `python -m scripts.mlops.baseline_refresh` and commit it", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
