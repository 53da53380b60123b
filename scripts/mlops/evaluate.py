"""Overall and per-slice accuracy, as one JSON-ready document.

The shape is shared by training runs, baselines and candidate evaluations::

    {"model": ..., "version": ..., "eval_set_hash": "sha256:...",
     "labels": ["no", "yes"],
     "overall": {"accuracy": 0.8, "n": 2400},
     "buckets": {"consumer": {"accuracy": 0.81, "n": 1100}, ...}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from . import data
from .errors import DataError, MlopsError


class Predictor(Protocol):
    def predict(self, frame: pd.DataFrame) -> Any: ...


def score(y_true: pd.Series, y_pred: Any, slices: pd.Series) -> dict[str, Any]:
    """Accuracy overall and for every slice value, with row counts (accuracy to 4 places)."""
    truth = np.asarray(y_true, dtype=str)
    predicted = np.asarray(y_pred, dtype=str)
    if truth.shape != predicted.shape:
        raise MlopsError(f"got {predicted.shape[0]} predictions for {truth.shape[0]} rows", "predict every row once.")
    if truth.size == 0:
        raise DataError("cannot evaluate on an empty evaluation set", "pass a data file with rows.")
    correct = truth == predicted
    buckets: dict[str, dict[str, float | int]] = {}
    for name in sorted(set(np.asarray(slices, dtype=str))):
        mask = np.asarray(slices, dtype=str) == name
        buckets[name] = {"accuracy": round(float(correct[mask].mean()), 4), "n": int(mask.sum())}
    return {
        "labels": sorted(set(predicted.tolist())),
        "overall": {"accuracy": round(float(correct.mean()), 4), "n": int(truth.size)},
        "buckets": buckets,
    }


def evaluate(model: Predictor, frame: pd.DataFrame, *, slice_by: str = data.SEGMENT) -> dict[str, Any]:
    """Score ``model`` on a validated churn frame, sliced by ``slice_by`` (the segment)."""
    frame = data.validate(frame, source="the evaluation set")
    predictions = model.predict(data.features(frame))
    return score(frame[data.LABEL], predictions, frame[slice_by])


def evaluate_file(predictor: Predictor, path: str | Path, /, **meta: Any) -> dict[str, Any]:
    """Score ``predictor`` on a CSV file and record the file's fingerprint (plus any ``meta``,
    e.g. ``model=NAME, version=N``)."""
    result = evaluate(predictor, data.load(path))
    return {**meta, "eval_set_hash": data.fingerprint(path), **result}


def to_frame(evaluation: dict[str, Any]) -> pd.DataFrame:
    """The per-slice table of an evaluation, overall row last."""
    rows = [{"slice": name, **values} for name, values in evaluation["buckets"].items()]
    rows.append({"slice": "(overall)", **evaluation["overall"]})
    return pd.DataFrame(rows).set_index("slice")


def write_json(document: dict[str, Any], path: str | Path) -> Path:
    """Write an evaluation document with sorted keys and a trailing newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path
