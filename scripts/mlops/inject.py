"""Regression injection: deliberately degraded candidates that the promotion gate must catch.

A gate is only trustworthy if it has been seen failing. This module builds candidates with
one known defect each and registers them like any other model version:

* :class:`SliceCorruption` (an MLflow pyfunc wrapper) flips the predicted label for a
  seeded fraction of one segment's rows: the aggregate barely moves while that slice drops;
* the :data:`CATALOGUE` adds label noise in the training data, a dropped input column, a
  latency regression, a shifted decision threshold, renamed labels and an evaluation on the
  wrong file, each with the gate checks it must fail (calibrated for :func:`catalogue_checks`).

Which rows a :class:`SliceCorruption` flips is decided per row, from a seeded hash of the
row's feature values: the same row is flipped whether it arrives alone or in a batch, and
the realised share of flipped rows is close to, not exactly, ``fraction``.

The wrapper classes subclass ``mlflow.pyfunc.PythonModel``; they are defined on first use
(``inject.SliceCorruption`` works as usual) so that importing this module, which the CLI
does for every command, does not import MLflow. They are pickled *by reference* to this
module: loading an injected model needs this repository on the Python path.

From a shell::

    python -m scripts.mlops inject --base models:/churn-classifier/1 --slice enterprise \\
        --fraction 0.15 --register churn-classifier
    python -m scripts.mlops injections        # the catalogue and the verdicts it expects
"""

import argparse
import contextlib
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from .errors import MlopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .gate import Check, GateReport

BASE_ARTIFACT = "base_model"
DEFAULT_EXPERIMENT = "injections"
#: The lab's degraded candidate: corrupt this share of the smallest slice.
LAB_SLICE = "enterprise"
LAB_FRACTION = 0.15


# --------------------------------------------------------------------------------------
# Row selection and label flipping (pure functions, used by the wrappers)
# --------------------------------------------------------------------------------------


def corrupted_rows(frame: "pd.DataFrame", slice_name: str, fraction: float, seed: int) -> "np.ndarray":
    """Boolean mask of the rows a :class:`SliceCorruption` flips.

    A row is flipped when its segment is ``slice_name`` and a seeded hash of its feature
    values, read as a number in [0, 1), is below ``fraction``.
    """
    import numpy as np
    import pandas as pd

    from . import data

    if data.SEGMENT not in frame.columns:
        raise MlopsError(f"the input has no {data.SEGMENT!r} column, so no slice can be selected",
                         f"pass the full feature table {list(data.FEATURES)}.")
    columns = [column for column in data.FEATURES if column in frame.columns]
    canonical = frame.loc[:, columns].copy()
    for column in columns:
        canonical[column] = canonical[column].astype(float if column in data.NUMERIC else str)
    hashes = pd.util.hash_pandas_object(canonical, index=False, hash_key=f"{seed:016d}"[-16:]).to_numpy()
    uniform = (hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (canonical[data.SEGMENT].to_numpy() == slice_name) & (uniform < fraction)


def flip_labels(labels: Any) -> "np.ndarray":
    """Swap the two churn labels ("no" <-> "yes"); anything else is left as it is."""
    import numpy as np

    from . import data

    values = np.asarray(labels, dtype=object)
    no, yes = data.LABELS
    return np.where(values == no, yes, np.where(values == yes, no, values))


def _check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise MlopsError(f"fraction must be in (0, 1], got {fraction!r}", "e.g. 0.15 corrupts about 15% of the slice.")
    return float(fraction)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MlopsError(f"seed must be a whole number >= 0, got {seed!r}", "pass e.g. --seed 0.")
    return seed


# --------------------------------------------------------------------------------------
# The pyfunc wrappers (defined lazily: see the module docstring)
# --------------------------------------------------------------------------------------

_WRAPPERS = ("WrappedModel", "SliceCorruption", "AddedLatency", "ThresholdShift", "LabelRename")
_defined: dict[str, type] = {}


def _define_wrappers() -> dict[str, type]:
    import mlflow
    import numpy as np
    import pandas as pd

    from . import data

    class WrappedModel(mlflow.pyfunc.PythonModel):
        """Predicts with a base model (logged as artifact ``base_model``), then :meth:`alter`\\ s the labels.

        On its own it changes nothing: registering it is the control that shows the
        wrapping machinery alone does not trip the gate.
        """

        def load_context(self, context: Any) -> None:
            self._base = mlflow.pyfunc.load_model(context.artifacts[BASE_ARTIFACT])

        def predict(self, context: Any, model_input: pd.DataFrame, params=None) -> list[str]:
            predictions = np.asarray(self._base.predict(model_input), dtype=object)
            return [str(label) for label in self.alter(model_input, predictions)]

        def alter(self, frame: pd.DataFrame, predictions: np.ndarray) -> np.ndarray:
            return predictions

        def settings(self) -> dict[str, Any]:
            """Parameters to log with the run (what was injected)."""
            return {}

    class SliceCorruption(WrappedModel):
        """Flips the label for a seeded ``fraction`` of the rows of one segment."""

        def __init__(self, slice_name: str, fraction: float, seed: int = 0) -> None:
            if slice_name not in data.SEGMENTS:
                raise MlopsError(f"unknown slice {slice_name!r}", f"choose one of {list(data.SEGMENTS)}.")
            self.slice_name, self.fraction, self.seed = slice_name, _check_fraction(fraction), _check_seed(seed)

        def alter(self, frame: pd.DataFrame, predictions: np.ndarray) -> np.ndarray:
            mask = corrupted_rows(frame, self.slice_name, self.fraction, self.seed)
            altered = predictions.copy()
            altered[mask] = flip_labels(predictions[mask])
            return altered

        def settings(self) -> dict[str, Any]:
            return {"slice": self.slice_name, "fraction": self.fraction, "seed": self.seed}

    class AddedLatency(WrappedModel):
        """Sleeps ``delay_ms`` per call (a slow feature lookup), predictions unchanged."""

        def __init__(self, delay_ms: float) -> None:
            if not delay_ms > 0:
                raise MlopsError(f"delay_ms must be positive, got {delay_ms!r}", "e.g. 150.")
            self.delay_ms = float(delay_ms)

        def alter(self, frame: pd.DataFrame, predictions: np.ndarray) -> np.ndarray:
            time.sleep(self.delay_ms / 1000.0)
            return predictions

        def settings(self) -> dict[str, Any]:
            return {"delay_ms": self.delay_ms}

    class ThresholdShift(WrappedModel):
        """Predicts ``positive`` only when its probability reaches ``threshold`` (not 0.5).

        Needs a scikit-learn base model (it calls ``predict_proba``).
        """

        def __init__(self, threshold: float, positive: str = data.LABELS[1]) -> None:
            if not 0.0 < threshold < 1.0:
                raise MlopsError(f"threshold must be in (0, 1), got {threshold!r}", "e.g. 0.65.")
            self.threshold, self.positive = float(threshold), positive

        def load_context(self, context: Any) -> None:
            self._base = mlflow.sklearn.load_model(context.artifacts[BASE_ARTIFACT])

        def predict(self, context: Any, model_input: pd.DataFrame, params=None) -> list[str]:
            classes = [str(label) for label in self._base.classes_]
            negative = next(label for label in classes if label != self.positive)
            proba = self._base.predict_proba(model_input)[:, classes.index(self.positive)]
            return [self.positive if p >= self.threshold else negative for p in proba]

        def settings(self) -> dict[str, Any]:
            return {"threshold": self.threshold, "positive": self.positive}

    class LabelRename(WrappedModel):
        """Renames predicted labels, e.g. {"no": "No", "yes": "Yes"}: a silent contract change."""

        def __init__(self, mapping: Mapping[str, str]) -> None:
            self.mapping = dict(mapping)

        def alter(self, frame: pd.DataFrame, predictions: np.ndarray) -> np.ndarray:
            return np.array([self.mapping.get(str(label), label) for label in predictions], dtype=object)

        def settings(self) -> dict[str, Any]:
            return {"mapping": ",".join(f"{k}->{v}" for k, v in sorted(self.mapping.items()))}

    classes = {cls.__name__: cls for cls in (WrappedModel, SliceCorruption, AddedLatency, ThresholdShift, LabelRename)}
    for cls in classes.values():  # importable as scripts.mlops.inject.<Name>, so pickled by reference
        cls.__qualname__ = cls.__name__
        cls.__module__ = __name__
    return classes


def __getattr__(name: str) -> Any:
    if name in _WRAPPERS:
        if not _defined:
            _defined.update(_define_wrappers())
            globals().update(_defined)
        return _defined[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------
# Logging and registering degraded candidates
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Hide MLflow's generic notes about pickled models and missing input examples.

    The wrapper's class is imported from this repository (pickled by reference, the pickle
    holds only its settings) and its signature is copied from the base model.
    """
    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column.*")
            yield
    finally:
        logger.setLevel(level)


def _start_run(experiment: str, run_name: str) -> Any:
    import mlflow

    from .train import experiment_id

    return mlflow.start_run(experiment_id=experiment_id(experiment), run_name=run_name)


def register_wrapper(
    model: Any,
    base_uri: str,
    *,
    register: str,
    run_name: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> int:
    """Log ``model`` (a :class:`WrappedModel`) around ``base_uri``, register it, return the version.

    The base model's files are stored inside the new model, and its signature is reused,
    so the wrapper serves exactly the same input columns.
    """
    import mlflow

    from . import train
    from .gate import check_model_uri

    check_model_uri(base_uri)
    info = mlflow.models.get_model_info(base_uri)
    if info.signature is None:
        raise MlopsError(f"{base_uri} has no signature to copy", "wrap a model that was logged with a signature.")
    if isinstance(model, __getattr__("ThresholdShift")) and "sklearn" not in info.flavors:
        raise MlopsError(f"a threshold shift needs a scikit-learn base model; {base_uri} has flavors "
                         f"{sorted(info.flavors)}", "wrap a version trained with `python -m scripts.mlops train`.")
    name = type(model).__name__
    with tempfile.TemporaryDirectory() as scratch:
        local = mlflow.artifacts.download_artifacts(artifact_uri=base_uri, dst_path=scratch)
        with _start_run(experiment, run_name or f"inject-{name}"), _quiet_logging():
            mlflow.log_params({"injection": name, "base_model": base_uri, **model.settings()})
            logged = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                artifacts={BASE_ARTIFACT: local},
                signature=info.signature,
                pip_requirements=train.pip_requirements(),
                registered_model_name=register,
            )
    return int(logged.registered_model_version)


def register_slice_corruption(base_uri: str, slice_name: str, fraction: float, *, register: str, seed: int = 0) -> int:
    """Register a :class:`SliceCorruption` of ``base_uri``; return the new version."""
    model = __getattr__("SliceCorruption")(slice_name, fraction, seed)
    return register_wrapper(model, base_uri, register=register, run_name=f"inject-{slice_name}-{fraction:g}")


def noisy_labels(frame: "pd.DataFrame", fraction: float, seed: int, flip_from: str | None = "yes") -> "pd.DataFrame":
    """A copy of ``frame`` with a seeded ``fraction`` of labels flipped.

    ``flip_from="yes"`` flips only churners to "no" (churn events lost upstream, a common
    pipeline bug); ``None`` flips either way (symmetric noise, which logistic regression
    mostly shrugs off).
    """
    import numpy as np

    from . import data

    _check_fraction(fraction)
    rng = np.random.default_rng(_check_seed(seed))
    labels = frame[data.LABEL].to_numpy()
    chosen = rng.random(len(frame)) < fraction
    if flip_from is not None:
        chosen &= labels == flip_from
    noisy = frame.copy()
    noisy[data.LABEL] = np.where(chosen, flip_labels(labels), labels)
    return noisy


def register_label_noise(
    train_path: str | Path,
    eval_path: str | Path,
    fraction: float,
    *,
    register: str,
    scratch: str | Path,
    seed: int = 0,
    flip_from: str | None = "yes",
) -> int:
    """Retrain logreg (seed 42) on a noisy copy of ``train_path`` written to ``scratch``; register it."""
    from . import data, train

    noisy = noisy_labels(data.load(train_path), fraction, seed, flip_from)
    path = data.write_csv(noisy, Path(scratch) / f"{Path(train_path).stem}_noise{round(fraction * 100)}.csv")
    result = train.train_and_log(path, eval_path, train.TrainConfig(), register=register,
                                 experiment=DEFAULT_EXPERIMENT, run_name=f"inject-label-noise-{fraction:g}")
    if result.version is None:
        raise MlopsError(f"the noisy model was not registered as {register!r}", "pass a registered model name.")
    return result.version


def register_without_column(
    train_path: str | Path, eval_path: str | Path, column: str, *, register: str, seed: int = 42
) -> int:
    """Retrain logreg without input ``column`` (a schema change) and register it."""
    from . import train

    config = train.TrainConfig(seed=seed, drop=(column,))
    result = train.train_and_log(train_path, eval_path, config, register=register,
                                 experiment=DEFAULT_EXPERIMENT, run_name=f"inject-drop-{column}")
    if result.version is None:  # pragma: no cover - train_and_log registers when asked to
        raise MlopsError(f"the model without {column!r} was not registered as {register!r}", "pass a registered model name.")
    return result.version


# --------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InjectionContext:
    """What every injection builds from: the production model and the data files."""

    base_uri: str  # the production version, e.g. models:/churn-classifier/1
    register: str  # registered model name for the degraded candidates
    datasets: Mapping[str, Path]  # "v1", "v2", "eval" (from data.write_datasets)
    scratch: Path  # folder for derived files (noisy training data)
    seed: int = 0


@dataclass(frozen=True)
class Candidate:
    """A built candidate: the model to gate and the data file to evaluate it on."""

    uri: str
    version: int | None
    data_path: Path


@dataclass(frozen=True)
class Injection:
    """One catalogue entry: a defect, how to build it, and the checks it must fail."""

    name: str
    description: str
    builder: Callable[..., Candidate]
    params: Mapping[str, Any] = field(default_factory=dict)
    expected_failures: frozenset[str] = frozenset()

    def build(self, ctx: InjectionContext) -> Candidate:
        return self.builder(ctx, **self.params)

    def run(self, ctx: InjectionContext, baseline: Mapping[str, Any],
            checks: "list[Check] | None" = None) -> tuple[Candidate, "GateReport"]:
        """Build the candidate and put it through the gate (default: :func:`catalogue_checks`)."""
        from . import gate

        candidate = self.build(ctx)
        evidence = gate.collect_evidence(candidate.uri, candidate.data_path, baseline, production_uri=ctx.base_uri)
        return candidate, gate.run_gate(catalogue_checks() if checks is None else checks, evidence)


def _registered(ctx: InjectionContext, version: int) -> Candidate:
    return Candidate(f"models:/{ctx.register}/{version}", version, Path(ctx.datasets["eval"]))


def _build_wrapper(ctx: InjectionContext, *, kind: str, **settings: Any) -> Candidate:
    model = __getattr__(kind)(**settings)
    return _registered(ctx, register_wrapper(model, ctx.base_uri, register=ctx.register, run_name=f"inject-{kind}"))


def _build_slice(ctx: InjectionContext, *, slice_name: str, fraction: float) -> Candidate:
    return _registered(ctx, register_slice_corruption(ctx.base_uri, slice_name, fraction, register=ctx.register,
                                                      seed=ctx.seed))


def _build_label_noise(ctx: InjectionContext, *, fraction: float, flip_from: str | None) -> Candidate:
    version = register_label_noise(ctx.datasets["v1"], ctx.datasets["eval"], fraction, register=ctx.register,
                                   scratch=ctx.scratch, seed=ctx.seed, flip_from=flip_from)
    return _registered(ctx, version)


def _build_dropped_column(ctx: InjectionContext, *, column: str) -> Candidate:
    return _registered(ctx, register_without_column(ctx.datasets["v1"], ctx.datasets["eval"], column,
                                                    register=ctx.register))


def _build_wrong_eval_set(ctx: InjectionContext, *, batch: str) -> Candidate:
    return Candidate(ctx.base_uri, None, Path(ctx.datasets[batch]))


#: Policy the catalogue's expected verdicts were calibrated for (see :func:`catalogue_checks`).
CATALOGUE_POLICY: Mapping[str, Any] = {
    "tolerance": 0.02,
    "min_slice_size": 30,
    "floor": 0.75,
    "latency_budget_ms": 100.0,
    "latency_calls": 20,
}

CATALOGUE: tuple[Injection, ...] = (
    Injection(
        "identity_wrapper",
        "Control: the production model inside a wrapper that changes nothing. Must pass every check.",
        _build_wrapper, {"kind": "WrappedModel"}, frozenset(),
    ),
    Injection(
        "slice_corruption",
        f"Flip the predicted label for ~{LAB_FRACTION:.0%} of {LAB_SLICE} rows: overall accuracy moves by under "
        "a point, the smallest slice drops far beyond the tolerance.",
        _build_slice, {"slice_name": LAB_SLICE, "fraction": LAB_FRACTION}, frozenset({"slice_regression"}),
    ),
    Injection(
        "label_noise",
        "Retrain on v1 after 30% of churners were relabelled 'no' (churn events lost upstream).",
        _build_label_noise, {"fraction": 0.3, "flip_from": "yes"}, frozenset({"slice_regression", "metric_floor"}),
    ),
    Injection(
        "dropped_column",
        "Retrain without the data_usage_gb column: accuracy is unchanged, but the serving contract is not.",
        _build_dropped_column, {"column": "data_usage_gb"}, frozenset({"input_schema"}),
    ),
    Injection(
        "latency_regression",
        "Every prediction call sleeps 150 ms (a slow feature lookup); predictions unchanged.",
        _build_wrapper, {"kind": "AddedLatency", "delay_ms": 150.0}, frozenset({"latency_p95"}),
    ),
    Injection(
        "threshold_shift",
        "Predict churn only at probability >= 0.65 instead of 0.5: fewer churners flagged.",
        _build_wrapper, {"kind": "ThresholdShift", "threshold": 0.65}, frozenset({"slice_regression"}),
    ),
    Injection(
        "label_rename",
        "Predict 'No'/'Yes' instead of 'no'/'yes': every prediction is now 'wrong' and consumers break.",
        _build_wrapper, {"kind": "LabelRename", "mapping": {"no": "No", "yes": "Yes"}},
        frozenset({"label_coverage", "slice_regression", "metric_floor"}),
    ),
    Injection(
        "wrong_eval_set",
        "The production model evaluated on churn_v2.csv instead of the frozen evaluation set.",
        _build_wrong_eval_set, {"batch": "v2"}, frozenset({"eval_set_fingerprint", "slice_regression"}),
    ),
)


def catalogue_checks() -> "list[Check]":
    """The gate policy the catalogue's expected verdicts hold for."""
    from . import gate

    return gate.default_checks(**CATALOGUE_POLICY)


def by_name(name: str) -> Injection:
    """The catalogue entry called ``name``."""
    for injection in CATALOGUE:
        if injection.name == name:
            return injection
    raise MlopsError(f"no injection named {name!r}", f"choose one of {[i.name for i in CATALOGUE]}.")


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def cmd_inject(args: argparse.Namespace) -> int:
    from . import data
    from .workspace import open_workspace

    if args.slice not in data.SEGMENTS:
        raise MlopsError(f"unknown slice {args.slice!r}", f"choose one of {list(data.SEGMENTS)}.")
    _check_fraction(args.fraction)
    _check_seed(args.seed)
    open_workspace(args.workspace, fresh=False)
    version = register_slice_corruption(args.base, args.slice, args.fraction, register=args.register, seed=args.seed)
    print(f"registered models:/{args.register}/{version}: {args.base} with the label flipped for ~{args.fraction:.0%} "
          f"of {args.slice!r} rows (seed {args.seed})")
    return 0


def cmd_injections(args: argparse.Namespace) -> int:
    print(f"Expected verdicts hold for the policy {dict(CATALOGUE_POLICY)}\n")
    for injection in CATALOGUE:
        failures = ", ".join(sorted(injection.expected_failures))
        verdict = f"must fail: {failures}" if failures else "must pass every check"
        print(f"{injection.name:20s} {verdict}\n{'':20s} {injection.description}")
    return 0


def add_commands(commands: Any) -> None:
    """Register the ``inject`` and ``injections`` sub-commands on the toolkit's CLI."""
    p = commands.add_parser("inject", help="register a copy of a model that corrupts one slice's predictions")
    p.add_argument("--base", required=True, help="model to corrupt, e.g. models:/churn-classifier/1")
    p.add_argument("--slice", default=LAB_SLICE, help=f"segment to corrupt (default {LAB_SLICE})")
    p.add_argument("--fraction", type=float, default=LAB_FRACTION,
                   help=f"share of that segment's predictions to flip (default {LAB_FRACTION})")
    p.add_argument("--seed", type=int, default=0, help="which rows are flipped (default 0)")
    p.add_argument("--register", required=True, metavar="NAME", help="registered model to add the version to")
    p.set_defaults(func=cmd_inject)

    p = commands.add_parser("injections", help="list the regression-injection catalogue and expected gate verdicts")
    p.set_defaults(func=cmd_injections)
