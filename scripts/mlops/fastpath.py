"""The project's fitted pipelines, computed with numpy on validated records: same labels, less overhead.

A one-record ``Pipeline.predict`` spends most of its ~5 ms in per-call machinery (the
ColumnTransformer's dispatch, input checks, DataFrame detection), not in arithmetic. For the
pipelines :mod:`scripts.mlops.train` builds (a ColumnTransformer of ``StandardScaler`` and
``OneHotEncoder`` blocks, then ``LogisticRegression`` or ``HistGradientBoostingClassifier``),
:func:`compile_pipeline` reads the fitted numbers once and computes the same thing directly:

* scaling is ``(x - mean_) / scale_`` elementwise, as ``StandardScaler.transform`` does it;
* one-hot columns are set from the fitted ``categories_`` (unknown values: all zeros, as
  ``handle_unknown="ignore"``);
* logistic regression is ``X @ coef_.T + intercept_`` (the very expression scikit-learn evaluates)
  and ``> 0`` / ``argmax``;
* gradient boosting walks each fitted tree (``x <= threshold`` goes left, NaN follows
  ``missing_go_to_left``) and sums the leaf values onto the baseline in the fitted order,
  exactly as scikit-learn's predictor does, then ``> 0`` / ``argmax``.

Equal code is not proof, so :func:`verify` runs the fast path and the pipeline itself on the whole
frozen evaluation set and raises :class:`FastPathMismatch` unless every label is equal; the
model server refuses to start then. Pipelines of any other shape are not compiled
(:func:`compile_pipeline` says why) and the server calls the pipeline's own ``predict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MlopsError

Record = Mapping[str, Any]

#: Trees are walked in Python, one record at a time: fast for a few records, slow for thousands.
#: Larger requests of a tree model go to the pipeline itself.
TREE_MAX_ROWS = 64


class FastPathMismatch(MlopsError):
    """The numpy path does not give the pipeline's labels: the server must not serve it."""


@dataclass(frozen=True)
class _Scaled:
    columns: tuple[str, ...]
    offset: int
    mean: np.ndarray | None
    scale: np.ndarray | None


@dataclass(frozen=True)
class _OneHot:
    column: str
    offset: int
    positions: dict[Any, int]


#: One fitted tree as parallel lists: feature, threshold, left, right, is_leaf, value, missing_go_to_left.
_Tree = tuple[list[int], list[float], list[int], list[int], list[bool], list[float], list[bool]]


class _Linear:
    def __init__(self, estimator: Any) -> None:
        self.coef_t = np.asarray(estimator.coef_).T
        self.intercept = np.asarray(estimator.intercept_)
        self.max_rows: int | None = None

    def scores(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X @ self.coef_t + self.intercept)


class _Trees:
    def __init__(self, estimator: Any) -> None:
        self.baseline = [float(v) for v in np.asarray(estimator._baseline_prediction).ravel()]
        self.iterations: list[list[_Tree]] = []
        for predictors in estimator._predictors:
            trees = []
            for predictor in predictors:
                nodes = predictor.nodes
                if bool(np.any(nodes["is_categorical"])):
                    raise ValueError("a tree splits on a categorical feature")
                trees.append(
                    (
                        nodes["feature_idx"].tolist(),
                        nodes["num_threshold"].tolist(),
                        nodes["left"].tolist(),
                        nodes["right"].tolist(),
                        nodes["is_leaf"].astype(bool).tolist(),
                        nodes["value"].tolist(),
                        nodes["missing_go_to_left"].astype(bool).tolist(),
                    )
                )
            self.iterations.append(trees)
        self.max_rows: int | None = TREE_MAX_ROWS

    def scores(self, X: np.ndarray) -> np.ndarray:
        out = np.empty((X.shape[0], len(self.baseline)))
        for i, row in enumerate(X.tolist()):
            raw = list(self.baseline)
            for trees in self.iterations:
                for k, tree in enumerate(trees):
                    raw[k] += _leaf_value(tree, row)
            out[i] = raw
        return out


def _leaf_value(tree: _Tree, row: list[float]) -> float:
    feature, threshold, left, right, is_leaf, value, missing_left = tree
    node = 0
    while not is_leaf[node]:
        x = row[feature[node]]
        if x <= threshold[node]:
            node = left[node]
        elif x != x:  # NaN
            node = left[node] if missing_left[node] else right[node]
        else:
            node = right[node]
    return value[node]


@dataclass(frozen=True)
class FastPipeline:
    """A compiled pipeline: :meth:`predict` gives labels for validated records."""

    kind: str
    width: int
    scaled: tuple[_Scaled, ...]
    onehot: tuple[_OneHot, ...]
    classifier: _Linear | _Trees
    classes: np.ndarray

    @property
    def max_rows(self) -> int | None:
        """The largest request the fast path takes (None: any); the pipeline answers larger ones."""
        return self.classifier.max_rows

    def transform(self, records: Sequence[Record]) -> np.ndarray:
        """The ColumnTransformer's output for ``records``."""
        X = np.zeros((len(records), self.width))
        for block in self.scaled:
            values = np.array([[r[c] for c in block.columns] for r in records], dtype=np.float64)
            if block.mean is not None:
                values -= block.mean
            if block.scale is not None:
                values /= block.scale
            X[:, block.offset : block.offset + len(block.columns)] = values
        for encoded in self.onehot:
            for i, r in enumerate(records):
                position = encoded.positions.get(r[encoded.column])
                if position is not None:
                    X[i, encoded.offset + position] = 1.0
        return X

    def predict(self, records: Sequence[Record]) -> list[Any]:
        """The labels the pipeline predicts for ``records``."""
        scores = self.classifier.scores(self.transform(records))
        if scores.ndim == 1 or scores.shape[1] == 1:
            indices = (scores.reshape(-1) > 0).astype(int)
        else:
            indices = np.argmax(scores, axis=1)
        return list(self.classes.take(indices, axis=0).tolist())


def _compile_preprocess(preprocess: Any) -> tuple[int, list[_Scaled], list[_OneHot]] | str:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if type(preprocess) is not ColumnTransformer:
        return f"the first step is {type(preprocess).__name__}, not a ColumnTransformer"
    if getattr(preprocess, "sparse_output_", False):
        return "the ColumnTransformer's output is sparse"
    offset, scaled, onehot = 0, [], []
    for name, transformer, columns in preprocess.transformers_:
        if isinstance(transformer, str):
            if transformer == "drop" or not len(columns):
                continue
            return f"step {name!r} is {transformer!r}"
        if not all(isinstance(c, str) for c in columns):
            return f"step {name!r} selects columns by position"
        if type(transformer) is StandardScaler:
            mean = np.asarray(transformer.mean_, dtype=np.float64) if transformer.with_mean else None
            scale = np.asarray(transformer.scale_, dtype=np.float64) if transformer.with_std else None
            scaled.append(_Scaled(tuple(columns), offset, mean, scale))
            offset += len(columns)
        elif type(transformer) is OneHotEncoder:
            if transformer.drop_idx_ is not None or getattr(transformer, "_infrequent_enabled", False):
                return f"step {name!r} drops or groups categories"
            if transformer.handle_unknown != "ignore" or np.dtype(transformer.dtype) != np.float64:
                return f"step {name!r} does not ignore unknown categories into float64 columns"
            for column, categories in zip(columns, transformer.categories_, strict=True):
                positions = {value: i for i, value in enumerate(np.asarray(categories).tolist())}
                onehot.append(_OneHot(column, offset, positions))
                offset += len(positions)
        else:
            return f"step {name!r} is a {type(transformer).__name__}"
    return offset, scaled, onehot


def compile_pipeline(model: Any) -> FastPipeline | str:
    """The numpy path of a fitted pipeline, or a sentence saying why this pipeline has none."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if type(model) is not Pipeline or len(model.steps) != 2:
        return f"the model is a {type(model).__name__}, not a two-step Pipeline"
    preprocess, estimator = model.steps[0][1], model.steps[1][1]
    compiled = _compile_preprocess(preprocess)
    if isinstance(compiled, str):
        return compiled
    width, scaled, onehot = compiled
    classifier: _Linear | _Trees
    if type(estimator) is LogisticRegression:
        classifier, kind = _Linear(estimator), "logistic regression"
    elif type(estimator) is HistGradientBoostingClassifier:
        if getattr(estimator, "is_categorical_", None) is not None and bool(np.any(estimator.is_categorical_)):
            return "the gradient boosting model has categorical features"
        try:
            classifier, kind = _Trees(estimator), "gradient boosting"
        except ValueError as exc:
            return str(exc)
    else:
        return f"the estimator is a {type(estimator).__name__}"
    if getattr(estimator, "n_features_in_", width) != width:
        return f"the estimator takes {estimator.n_features_in_} features, the preprocessing makes {width}"
    return FastPipeline(kind, width, tuple(scaled), tuple(onehot), classifier, np.asarray(estimator.classes_))


def verify(fast: FastPipeline, model: Any, frame: Any) -> int:
    """Check that ``fast`` and ``model`` give equal labels on every row of ``frame``; the row count.

    Raises :class:`FastPathMismatch` naming how many rows differ and the first of them.
    """
    expected = np.asarray(model.predict(frame)).tolist()
    records = frame.to_dict("records")
    got: list[Any] = []
    step = fast.max_rows or len(records)
    for start in range(0, len(records), step):  # in requests the fast path would answer
        got.extend(fast.predict(records[start : start + step]))
    differ = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
    if differ:
        first = differ[0]
        raise FastPathMismatch(
            f"the numpy path of the {fast.kind} pipeline disagrees with the pipeline itself on {len(differ)} of "
            f"{len(expected)} rows of the frozen evaluation set (row {first}: {got[first]!r} instead of "
            f"{expected[first]!r}); refusing to serve it",
            "serve without the fast path (`--no-fast-path`), and report the pipeline that broke it.",
        )
    return len(expected)
