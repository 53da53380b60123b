"""Log and register degraded candidates like any other model version.

Wrapped models (:mod:`.wrappers`) are stored with their base model's files and signature,
and with a copy of the toolkit's code (``code_paths``), so they load without this repository
on the path. Retrained candidates (label noise, a dropped column) go through
:func:`scripts.mlops.train.train_and_log`, the one training path.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from .rows import noisy_labels

DEFAULT_EXPERIMENT = "injections"
#: The artifact name under which a wrapped model stores its base model.
BASE_ARTIFACT = "base_model"
#: The toolkit package shipped with wrapped models: ``scripts/__init__.py`` and ``scripts/mlops``.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def toolkit_code(folder: Path) -> Path:
    """Copy the ``scripts.mlops`` package (sources only) to ``folder/scripts``; return that path.

    MLflow puts a model's ``code`` folder first on ``sys.path`` when it loads the model, so
    ``scripts.mlops.inject.wrappers`` resolves from the copy where the repository is absent.
    """
    target = folder / "scripts"
    shutil.copytree(_PACKAGE_ROOT / "mlops", target / "mlops", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(_PACKAGE_ROOT / "__init__.py", target / "__init__.py")
    return target


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

    from ..train import experiment_id

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

    from .. import registry, train
    from .wrappers import ThresholdShift

    registry.check_model_uri(base_uri)
    info = mlflow.models.get_model_info(base_uri)
    if info.signature is None:
        raise MlopsError(f"{base_uri} has no signature to copy", "wrap a model that was logged with a signature.")
    if isinstance(model, ThresholdShift) and "sklearn" not in info.flavors:
        raise MlopsError(
            f"a threshold shift needs a scikit-learn base model; {base_uri} has flavors {sorted(info.flavors)}",
            "wrap a version trained with `python -m scripts.mlops train`.",
        )
    name = type(model).__name__
    with tempfile.TemporaryDirectory() as scratch:
        local = mlflow.artifacts.download_artifacts(artifact_uri=base_uri, dst_path=str(Path(scratch) / "base"))
        code = toolkit_code(Path(scratch) / "code")
        with _start_run(experiment, run_name or f"inject-{name}"), _quiet_logging():
            mlflow.log_params({"injection": name, "base_model": base_uri, **model.settings()})
            logged = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                artifacts={BASE_ARTIFACT: local},
                signature=info.signature,
                pip_requirements=train.pip_requirements(),
                registered_model_name=register,
                code_paths=[str(code)],
            )
    return int(logged.registered_model_version)


def register_slice_corruption(base_uri: str, slice_name: str, fraction: float, *, register: str, seed: int = 0) -> int:
    """Register a :class:`SliceCorruption` of ``base_uri``; return the new version."""
    from .wrappers import SliceCorruption

    model = SliceCorruption(slice_name, fraction, seed)
    return register_wrapper(model, base_uri, register=register, run_name=f"inject-{slice_name}-{fraction:g}")


def preview_slice_corruption(
    base_uri: str, slice_name: str, fraction: float, eval_path: str | Path, *, seed: int = 0
) -> dict[str, Any]:
    """The evaluation :func:`register_slice_corruption` would give; registers and logs nothing.

    Loads ``base_uri``, applies the same :class:`SliceCorruption` in memory and scores it on
    ``eval_path`` (the evaluation document of :func:`scripts.mlops.evaluate.evaluate_file`).
    Try as many segments and fractions as you like; register only the one you choose.
    """
    import mlflow

    from .. import evaluate, registry
    from .wrappers import SliceCorruption

    registry.check_model_uri(base_uri)
    model = SliceCorruption(slice_name, fraction, seed)
    model._base = mlflow.pyfunc.load_model(base_uri)

    class _InMemory:
        def predict(self, frame: Any) -> Any:
            return model.predict(None, frame)

    return evaluate.evaluate_file(_InMemory(), eval_path)


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
    from .. import data, train

    noisy = noisy_labels(data.load(train_path), fraction, seed, flip_from)
    path = data.write_csv(noisy, Path(scratch) / f"{Path(train_path).stem}_noise{round(fraction * 100)}.csv")
    result = train.train_and_log(
        path,
        eval_path,
        train.TrainConfig(),
        register=register,
        experiment=DEFAULT_EXPERIMENT,
        run_name=f"inject-label-noise-{fraction:g}",
    )
    if result.version is None:
        raise MlopsError(f"the noisy model was not registered as {register!r}", "pass a registered model name.")
    return result.version


def register_without_column(
    train_path: str | Path, eval_path: str | Path, column: str, *, register: str, seed: int = 42
) -> int:
    """Retrain logreg without input ``column`` (a schema change) and register it."""
    from .. import train

    config = train.TrainConfig(seed=seed, drop=(column,))
    result = train.train_and_log(
        train_path,
        eval_path,
        config,
        register=register,
        experiment=DEFAULT_EXPERIMENT,
        run_name=f"inject-drop-{column}",
    )
    if result.version is None:  # pragma: no cover - train_and_log registers when asked to
        raise MlopsError(
            f"the model without {column!r} was not registered as {register!r}", "pass a registered model name."
        )
    return result.version
