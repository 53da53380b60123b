"""Noise measurement: seeded bootstrap refits and the per-slice spread a gate tolerance is chosen from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scripts.mlops import data, evaluate, noise, train
from scripts.mlops.errors import DataError, MlopsError


@pytest.fixture(scope="module")
def frames(datasets: dict[str, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return data.load(datasets["v1"]), data.load(datasets["eval"])


@pytest.fixture(scope="module")
def study(frames: tuple[pd.DataFrame, pd.DataFrame]) -> noise.NoiseStudy:
    return noise.measure_noise(*frames, refits=3, seed=0)


def test_bootstrap_sample_is_seeded_same_size_and_drawn_from_the_frame(frames) -> None:
    train_frame, _ = frames
    first = noise.bootstrap_sample(train_frame, 7)
    assert len(first) == len(train_frame)
    assert list(first.index) == list(range(len(train_frame)))
    pd.testing.assert_frame_equal(first, noise.bootstrap_sample(train_frame, 7))
    assert not first.equals(noise.bootstrap_sample(train_frame, 8))
    assert set(first[data.ID]) <= set(train_frame[data.ID])
    assert first[data.ID].duplicated().any(), "drawn with replacement"


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bootstrap_sample_rejects_bad_seeds(frames, seed) -> None:
    with pytest.raises(MlopsError, match="seed"):
        noise.bootstrap_sample(frames[0], seed)


def test_bootstrap_sample_of_an_empty_table_is_refused(frames) -> None:
    with pytest.raises(MlopsError, match="empty"):
        noise.bootstrap_sample(frames[0].head(0), 0)


def test_logistic_regression_is_deterministic_whatever_the_seed(frames) -> None:
    """Why the study resamples the data instead of changing the seed."""
    train_frame, eval_frame = frames
    scores = {evaluate.evaluate(train.fit(train_frame, train.TrainConfig(seed=seed)), eval_frame)["overall"]["accuracy"]
              for seed in (1, 2)}
    assert len(scores) == 1


def test_study_shape_reference_and_determinism(study, frames) -> None:
    train_frame, eval_frame = frames
    assert list(study.refits.columns) == sorted(data.SEGMENTS) + ["overall"]
    assert list(study.refits.index) == [0, 1, 2] and study.refits.index.name == "refit"
    assert study.reference == {**evaluate.evaluate(train.fit(train_frame), eval_frame)}
    assert all(isinstance(name, str) for name in study.reference["buckets"])
    again = noise.measure_noise(train_frame, eval_frame, refits=3, seed=0)
    pd.testing.assert_frame_equal(study.refits, again.refits)
    other = noise.measure_noise(train_frame, eval_frame, refits=3, seed=1)
    assert not study.refits.equals(other.refits)
    assert study.refits.nunique().max() > 1, "resampling must move at least one slice"


def test_a_refit_does_not_depend_on_how_many_were_drawn(study, frames) -> None:
    longer = noise.measure_noise(*frames, refits=4, seed=0)
    pd.testing.assert_frame_equal(longer.refits.head(3), study.refits)


def test_refit_i_is_the_model_fit_on_the_ith_seeded_resample(study, frames) -> None:
    train_frame, eval_frame = frames
    child = np.random.SeedSequence(0).spawn(3)[1]
    evaluation = evaluate.evaluate(train.fit(noise.bootstrap_sample(train_frame, child)), eval_frame)
    assert study.refits.loc[1, "overall"] == evaluation["overall"]["accuracy"]
    assert study.refits.loc[1, "student"] == evaluation["buckets"]["student"]["accuracy"]


def test_spread_summarises_each_slice_with_overall_last(study) -> None:
    spread = study.spread()
    assert list(spread.columns) == list(noise.SPREAD_COLUMNS)
    assert list(spread.index) == sorted(data.SEGMENTS) + ["overall"]
    for name, row in spread.iterrows():
        values = study.refits[name]
        source = study.reference["overall"] if name == "overall" else study.reference["buckets"][name]
        assert row["n"] == source["n"] and row["reference"] == source["accuracy"]
        assert row["mean"] == pytest.approx(values.mean())
        assert row["std"] == pytest.approx(values.std(ddof=1))
        assert row["min"] == values.min() and row["max"] == values.max()
        assert row["range"] == pytest.approx(values.max() - values.min())
        assert row["worst_drop"] == pytest.approx(source["accuracy"] - values.min())
    assert spread["n"].drop(index="overall").sum() == spread.loc["overall", "n"]


@pytest.mark.parametrize("refits", [0, 1, 2.0, True, "10"])
def test_bad_refit_counts_are_refused(frames, refits) -> None:
    with pytest.raises(MlopsError, match="refits"):
        noise.measure_noise(*frames, refits=refits)


@pytest.mark.parametrize("seed", [-1, 0.5, False])
def test_bad_study_seeds_are_refused(frames, seed) -> None:
    with pytest.raises(MlopsError, match="seed"):
        noise.measure_noise(*frames, refits=2, seed=seed)


def test_invalid_tables_raise_data_errors(frames) -> None:
    train_frame, eval_frame = frames
    with pytest.raises(DataError, match="no rows"):
        noise.measure_noise(train_frame.head(0), eval_frame, refits=2)
    with pytest.raises(DataError, match="missing column"):
        noise.measure_noise(train_frame, eval_frame.drop(columns=["contract"]), refits=2)


def test_the_noise_module_judges_slices_as_the_gate_does() -> None:
    from scripts.mlops import gate

    assert noise.EPSILON == gate.EPSILON and noise.MIN_SLICE_SIZE == gate.DEFAULT_MIN_SLICE_SIZE


def test_refused_marks_the_refits_a_slice_gate_would_refuse(study: noise.NoiseStudy) -> None:
    refits = study.refits.copy()
    reference = study.reference["buckets"]
    refits.loc[0, "student"] = reference["student"]["accuracy"] - 0.05  # one refit far below on one slice
    refits.loc[1] = [reference[name]["accuracy"] if name in reference else 0.0 for name in refits.columns]
    changed = noise.NoiseStudy(reference=study.reference, refits=refits, seed=study.seed)
    refused = changed.refused(0.02)
    assert refused.dtype == bool and len(refused) == len(refits)
    assert bool(refused.loc[0]) and not bool(refused.loc[1]), "the overall column is not judged; equal passes"
    assert not changed.refused(0.06).loc[0]
    assert changed.refused(0.02, min_slice_size=10_000).sum() == 0, "no slice is large enough to judge"


def test_fresh_batches_are_seeded_full_size_draws_of_the_generator(frames) -> None:
    first = noise.fresh_batches(*frames, batches=2, seed=3)
    again = noise.fresh_batches(*frames, batches=2, seed=3)
    pd.testing.assert_frame_equal(first.refits, again.refits)
    assert list(first.refits.columns) == [*sorted(data.SEGMENTS), noise.OVERALL]
    assert first.reference == noise.measure_noise(*frames, refits=2, seed=0).reference
    assert not first.refits.equals(noise.fresh_batches(*frames, batches=2, seed=4).refits)
    with pytest.raises(MlopsError, match="batches"):
        noise.fresh_batches(*frames, batches=1)
