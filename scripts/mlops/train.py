"""Deterministic training of the churn classifier, logged to MLflow and optionally registered.

A run records everything needed to defend the model later: hyper-parameters, the SHA-256 of
the training and evaluation files, overall and per-slice accuracy (also as an
``evaluation.json`` artifact), and the model itself with its signature and an input example.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from . import data
from .bundle import CODE_TAG
from .errors import MlopsError
from .evaluate import evaluate, to_frame

ModelKind = Literal["logreg", "hgb"]
MODEL_KINDS: tuple[str, ...] = ("logreg", "hgb")
DEFAULT_EXPERIMENT = "churn"
_TRUSTED_TYPES: dict[str, list[str]] = {
    "hgb": ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
}


@dataclass(frozen=True)
class TrainConfig:
    """What to train. ``params`` override the estimator's defaults for this project;
    ``drop`` leaves input columns out of the model (its signature then lacks them)."""

    model: ModelKind = "logreg"
    seed: int = 42
    params: dict[str, Any] = field(default_factory=dict)
    drop: tuple[str, ...] = ()

    def features(self) -> list[str]:
        """The input columns the model is trained on, in schema order."""
        unknown = sorted(set(self.drop) - set(data.FEATURES))
        if unknown:
            raise MlopsError(f"cannot drop unknown input column(s) {unknown}", f"choose from {list(data.FEATURES)}.")
        return [column for column in data.FEATURES if column not in self.drop]

    def estimator_params(self) -> dict[str, Any]:
        if self.model == "logreg":
            defaults: dict[str, Any] = {"C": 1.0, "max_iter": 1000}
        elif self.model == "hgb":
            defaults = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 15, "early_stopping": False}
        else:
            raise MlopsError(f"unknown model kind {self.model!r}", f"choose one of {list(MODEL_KINDS)}.")
        return {**defaults, **self.params}


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    model_uri: str
    evaluation: dict[str, Any]
    registered_name: str | None = None
    version: int | None = None

    @property
    def accuracy(self) -> float:
        return float(self.evaluation["overall"]["accuracy"])

    def slices(self) -> pd.DataFrame:
        return to_frame(self.evaluation)


def build_pipeline(config: TrainConfig) -> Pipeline:
    """Preprocessing (scale numbers, one-hot categories) followed by the chosen classifier."""
    params = config.estimator_params()
    if config.model == "logreg":
        classifier: Any = LogisticRegression(random_state=config.seed, **params)
    else:
        classifier = HistGradientBoostingClassifier(random_state=config.seed, **params)
    kept = config.features()
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), [c for c in data.NUMERIC if c in kept]),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                [c for c in data.CATEGORICAL if c in kept],
            ),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def fit(frame: pd.DataFrame, config: TrainConfig = TrainConfig()) -> Pipeline:
    """Fit the pipeline on a validated churn frame. Same frame and config, same model."""
    frame = data.validate(frame, source="the training set")
    if frame[data.LABEL].nunique() < 2:
        raise MlopsError(
            "the training set has a single label", f"training needs examples of each of {list(data.LABELS)}."
        )
    np.random.seed(config.seed)
    return build_pipeline(config).fit(frame[config.features()], frame[data.LABEL])


def pip_requirements() -> list[str]:
    """Pinned requirements for the logged model (inferring them costs seconds per log)."""
    import mlflow

    return [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
    ]


def code_sha256() -> str:
    """``sha256:<hex>`` over the toolkit's source (``scripts/mlops/**/*.py``: relative paths and
    contents, sorted): the code revision a run records, with or without a git checkout."""
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def train_and_log(
    train_path: str | Path,
    eval_path: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    register: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
) -> TrainResult:
    """Train on ``train_path``, evaluate on ``eval_path``, log it all to MLflow.

    With ``register=NAME`` the model also becomes a new version of registered model NAME.
    MLflow must already point at a tracking store (see :func:`scripts.mlops.workspace.open_workspace`).
    """
    import mlflow
    from mlflow.models import infer_signature

    train_frame = data.load(train_path)
    eval_frame = data.load(eval_path)
    model = fit(train_frame, config)
    evaluation = evaluate(model, eval_frame)

    target_experiment = experiment_id(experiment)
    example = eval_frame[config.features()].head(5)
    signature = infer_signature(example, model.predict(example))
    with mlflow.start_run(
        experiment_id=target_experiment, run_name=run_name or f"{config.model}-seed{config.seed}"
    ) as run:
        mlflow.log_params(
            {
                "model": config.model,
                "seed": config.seed,
                **({"dropped_columns": ",".join(config.drop)} if config.drop else {}),
                **{f"clf.{key}": value for key, value in config.estimator_params().items()},
                "train_rows": len(train_frame),
                "train_file": Path(train_path).name,
                "train_sha256": data.fingerprint(train_path),
                "eval_file": Path(eval_path).name,
                "eval_sha256": data.fingerprint(eval_path),
            }
        )
        metrics = {"accuracy": evaluation["overall"]["accuracy"]}
        for name, bucket in evaluation["buckets"].items():
            metrics[f"accuracy.{name}"] = bucket["accuracy"]
            metrics[f"n.{name}"] = bucket["n"]
        mlflow.log_metrics(metrics)
        mlflow.set_tag(CODE_TAG, code_sha256())  # the code revision, for the release bundle's lock evidence
        mlflow.log_dict({"eval_set_hash": data.fingerprint(eval_path), **evaluation}, "evaluation.json")
        with warnings.catch_warnings():
            # Our tables have no missing values, so MLflow's hint about integer columns
            # that cannot hold NaN does not apply.
            warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column.*")
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
                registered_model_name=register,
                # MLflow stores scikit-learn models with skops, which only loads types it
                # trusts; we built this model ourselves, so its tree type is trusted.
                skops_trusted_types=_TRUSTED_TYPES.get(config.model),
            )
    version = int(info.registered_model_version) if register and info.registered_model_version else None
    return TrainResult(
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        evaluation=evaluation,
        registered_name=register,
        version=version,
    )


def experiment_id(name: str) -> str:
    """Id of experiment ``name``, created if needed (inside the active lab workspace, if any)."""
    import mlflow

    from .workspace import active

    current = active()
    if current is not None:  # keep artifacts inside the lab's workspace
        return current.experiment(name)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)
