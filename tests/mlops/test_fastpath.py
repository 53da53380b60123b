"""The numpy path of the project's pipelines (scripts.mlops.fastpath): equal labels, or no fast path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scripts.mlops import data, fastpath
from scripts.mlops.train import TrainConfig, fit


@pytest.fixture(scope="module")
def eval_features(datasets: dict[str, Path]) -> pd.DataFrame:
    return data.features(data.load(datasets["eval"]))


@pytest.fixture(scope="module", params=["logreg", "hgb"])
def pipeline(request: pytest.FixtureRequest, datasets: dict[str, Path]) -> Any:
    return fit(data.load(datasets["v1"]), TrainConfig(model=request.param))


def test_the_fast_path_gives_the_pipelines_labels_on_the_whole_eval_set(pipeline: Any, eval_features: pd.DataFrame) -> None:
    fast = fastpath.compile_pipeline(pipeline)
    assert isinstance(fast, fastpath.FastPipeline), fast
    assert fastpath.verify(fast, pipeline, eval_features) == len(eval_features) == 2400
    # One record at a time, as most requests come, and on records that only the API's bounds limit.
    records = eval_features.head(40).to_dict("records")
    extreme = [{**r, "data_usage_gb": 1e12, "monthly_charges": -1e12} for r in records[:5]]
    for record in records + extreme:
        assert fast.predict([record]) == pipeline.predict(pd.DataFrame([record])).tolist()


def test_the_transform_equals_the_column_transformer_bit_for_bit(pipeline: Any, eval_features: pd.DataFrame) -> None:
    fast = fastpath.compile_pipeline(pipeline)
    assert isinstance(fast, fastpath.FastPipeline)
    expected = pipeline.steps[0][1].transform(eval_features)
    assert np.array_equal(fast.transform(eval_features.to_dict("records")), expected)


def test_a_fast_path_that_disagrees_is_refused(
    pipeline: Any, eval_features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = fastpath.compile_pipeline(pipeline)
    assert isinstance(fast, fastpath.FastPipeline)
    honest = fastpath.FastPipeline.transform

    def tampered(self: fastpath.FastPipeline, records: Any) -> np.ndarray:  # one input read slightly wrong
        X = honest(self, records)
        X[:, 0] += 0.5
        return X

    monkeypatch.setattr(fastpath.FastPipeline, "transform", tampered)
    with pytest.raises(fastpath.FastPathMismatch) as excinfo:
        fastpath.verify(fast, pipeline, eval_features)
    assert "disagrees with the pipeline itself on" in str(excinfo.value) and "refusing to serve it" in str(excinfo.value)


def test_pipelines_of_another_shape_have_no_fast_path(datasets: dict[str, Path]) -> None:
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import Pipeline

    frame = data.load(datasets["v1"])
    fitted = fit(frame, TrainConfig(model="logreg"))
    ridge = Pipeline([("preprocess", fitted.steps[0][1]), ("classifier", RidgeClassifier())])
    ridge.fit(frame[list(data.FEATURES)], frame[data.LABEL])
    assert fastpath.compile_pipeline(ridge) == "the estimator is a RidgeClassifier"
    assert "not a two-step Pipeline" in str(fastpath.compile_pipeline(fitted.steps[1][1]))
