"""The injected models: MLflow pyfunc wrappers around a registered base model.

Each wrapper predicts with the base model (stored inside the new model as the artifact
``base_model``) and then changes the result in one known way. They are pickled *by
reference* to this module, and :func:`scripts.mlops.inject.register.register_wrapper` ships
the toolkit's code with the model (``code_paths``), so a registered injected model loads in a
process that does not have this repository on its path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from .. import data
from ..errors import MlopsError
from .register import BASE_ARTIFACT
from .rows import check_fraction, check_seed, corrupted_rows, flip_labels


class WrappedModel(PythonModel):
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
        self.slice_name, self.fraction, self.seed = slice_name, check_fraction(fraction), check_seed(seed)

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
