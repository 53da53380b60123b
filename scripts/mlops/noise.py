"""How much does accuracy move between equally good retrains? The noise a gate's tolerance must absorb.

A slice-regression gate refuses a candidate whose accuracy on some slice dropped by more than
a *tolerance*. Chosen too small, the gate refuses honest retrains (false alarms, and soon
nobody trusts it); chosen too large, it waves real regressions through. The tolerance should
come from a measurement: retrain the same model on data that is just as good and see how far
each slice's accuracy moves on the frozen evaluation set.

Re-running training with other seeds does not measure that here: logistic regression fitted
with ``lbfgs`` is deterministic whatever ``random_state`` says. The noise comes from the
*data*, so :func:`measure_noise` refits on **bootstrap resamples** of the training set (rows
drawn with replacement, same size, each resample seeded) with the configuration unchanged,
and scores every refit on the evaluation set, overall and per slice::

    study = noise.measure_noise(data.load(paths["v1"]), data.load(paths["eval"]), refits=10, seed=0)
    study.refits      # one row per refit: accuracy per slice, then "overall"
    study.spread()    # per slice: n, reference, mean, std, min, max, range, worst_drop
    study.refused(0.02)  # per refit: would a slice gate with this tolerance refuse it?

A bootstrap resample holds only about 63 % of the distinct training rows, so its refits are a
little worse than the full-data model: their mean sits below the reference (a bias), and
``worst_drop`` mixes that bias with the spread. :func:`fresh_batches` measures the same thing
without the bias where the data can be drawn again: it refits on new training batches drawn
from the seeded generator with the training file's own specification (next month's data, as
it would really arrive).

No MLflow logging happens: the refits are a measurement, not candidates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from . import data, train
from .errors import MlopsError
from .evaluate import evaluate

DEFAULT_REFITS = 10
#: The slice gate's own slack and minimum segment size (kept equal to ``gate.EPSILON`` and
#: ``gate.DEFAULT_MIN_SLICE_SIZE``; this module does not import the gate).
EPSILON = 1e-9
MIN_SLICE_SIZE = 30
OVERALL = "overall"
SPREAD_COLUMNS: tuple[str, ...] = ("n", "reference", "mean", "std", "min", "max", "range", "worst_drop")


@dataclass(frozen=True)
class NoiseStudy:
    """Accuracies of bootstrap refits of one training configuration on one evaluation set.

    ``reference`` is the evaluation document of the model fitted on the full training set;
    ``refits`` has one row per refit (index ``refit``, 0, 1, ...) and one column per slice
    (sorted) followed by ``"overall"``.
    """

    reference: dict[str, Any]
    refits: pd.DataFrame
    seed: int

    def spread(self) -> pd.DataFrame:
        """Per slice, then ``overall`` last: how far the refits' accuracy moved.

        Columns: ``n`` (evaluation rows), ``reference`` (full-data model), ``mean``, ``std``
        (sample standard deviation, ddof=1), ``min``, ``max``, ``range`` (max - min) and
        ``worst_drop`` (reference - min: how far below the full-data model an equally good
        retrain fell; negative if every refit scored higher).
        """
        rows = []
        for column in self.refits.columns:
            values = self.refits[column].astype(float)
            source = self.reference["overall"] if column == OVERALL else self.reference["buckets"][column]
            reference = float(source["accuracy"])
            rows.append(
                {
                    "slice": column,
                    "n": int(source["n"]),
                    "reference": reference,
                    "mean": float(values.mean()),
                    "std": float(values.std(ddof=1)),
                    "min": float(values.min()),
                    "max": float(values.max()),
                    "range": float(values.max() - values.min()),
                    "worst_drop": reference - float(values.min()),
                }
            )
        return pd.DataFrame(rows, columns=["slice", *SPREAD_COLUMNS]).set_index("slice")

    def refused(self, tolerance: float, *, min_slice_size: int = MIN_SLICE_SIZE) -> pd.Series:
        """Per refit: would a slice gate with ``tolerance`` refuse it against the reference?

        A refit is refused when any slice with at least ``min_slice_size`` evaluation rows
        scores more than ``tolerance`` below the full-data model, as ``gate.SliceRegression``
        decides. Every refit is an honest retrain, so ``refused(t).mean()`` is the measured
        false-alarm rate of tolerance ``t`` over all judged slices together.
        """
        judged = [
            column
            for column in self.refits.columns
            if column != OVERALL and int(self.reference["buckets"][column]["n"]) >= min_slice_size
        ]
        floors = pd.Series(
            {column: float(self.reference["buckets"][column]["accuracy"]) - tolerance - EPSILON for column in judged}
        )
        return (self.refits[judged] < floors).any(axis=1).rename("refused")


def bootstrap_sample(frame: pd.DataFrame, seed: int | np.random.SeedSequence) -> pd.DataFrame:
    """``len(frame)`` rows drawn with replacement from ``frame``, reproducibly from ``seed``.

    The result has a fresh ``0..n-1`` index; the same frame and seed give the same rows.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer, np.random.SeedSequence)):
        raise MlopsError(f"seed must be a whole number >= 0, got {seed!r}", "pass e.g. seed=0.")
    if not isinstance(seed, np.random.SeedSequence) and seed < 0:
        raise MlopsError(f"seed must be a whole number >= 0, got {seed!r}", "pass e.g. seed=0.")
    if len(frame) == 0:
        raise MlopsError("cannot resample an empty table", "pass the training set, with rows.")
    rows = np.random.default_rng(seed).integers(0, len(frame), size=len(frame))
    return frame.iloc[rows].reset_index(drop=True)


def measure_noise(
    train_frame: pd.DataFrame,
    eval_frame: pd.DataFrame,
    *,
    config: train.TrainConfig = train.TrainConfig(),
    refits: int = DEFAULT_REFITS,
    seed: int = 0,
) -> NoiseStudy:
    """Fit ``config`` on ``refits`` bootstrap resamples of ``train_frame``; score each on ``eval_frame``.

    Resample ``i`` is drawn from the ``i``-th child of ``numpy.random.SeedSequence(seed)``, so
    a study is reproducible from ``seed`` and a refit does not depend on how many others were
    drawn. ``config`` (including its seed) is the same for every refit: the only source of
    variation is which training rows were drawn. Takes about 0.2 s per logistic-regression
    refit on the 6,000-row training set.
    """
    if isinstance(refits, bool) or not isinstance(refits, int) or refits < 2:
        raise MlopsError(
            f"refits must be a whole number >= 2, got {refits!r}",
            "a spread needs at least two refits; 8-12 give a usable estimate in a few seconds.",
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MlopsError(f"seed must be a whole number >= 0, got {seed!r}", "pass e.g. seed=0.")
    train_frame = data.validate(train_frame, source="the training set")
    eval_frame = data.validate(eval_frame, source="the evaluation set")
    frames = (bootstrap_sample(train_frame, child) for child in np.random.SeedSequence(seed).spawn(refits))
    return _study(train_frame, eval_frame, frames, config, seed)


def fresh_batches(
    train_frame: pd.DataFrame,
    eval_frame: pd.DataFrame,
    *,
    config: train.TrainConfig = train.TrainConfig(),
    batches: int = 40,
    seed: int = 0,
    spec: data.BatchSpec | str = "v1",
) -> NoiseStudy:
    """Fit ``config`` on ``batches`` new training batches drawn like ``spec``; score each on ``eval_frame``.

    Each batch is :func:`data.generate` with ``spec`` (by default the one ``churn_v1.csv``
    was drawn with) and a seed taken from ``numpy.random.SeedSequence(seed)``: the same
    customers' distribution, other customers. Unlike a bootstrap resample, a batch is as large
    and as varied as the real training file, so the refits' mean is not biased low. The
    reference is still the model fitted on ``train_frame``. About 0.3 s per batch.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 2:
        raise MlopsError(f"batches must be a whole number >= 2, got {batches!r}", "pass e.g. batches=40.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MlopsError(f"seed must be a whole number >= 0, got {seed!r}", "pass e.g. seed=0.")
    base = data.BATCHES[spec] if isinstance(spec, str) else spec
    train_frame = data.validate(train_frame, source="the training set")
    eval_frame = data.validate(eval_frame, source="the evaluation set")
    frames = (
        data.generate(replace(base, name=f"{base.name}-fresh{i}", seed=int(child.generate_state(1)[0])))
        for i, child in enumerate(np.random.SeedSequence(seed).spawn(batches))
    )
    return _study(train_frame, eval_frame, frames, config, seed)


def _study(
    train_frame: pd.DataFrame,
    eval_frame: pd.DataFrame,
    frames: Iterable[pd.DataFrame],
    config: train.TrainConfig,
    seed: int,
) -> NoiseStudy:
    reference = evaluate(train.fit(train_frame, config), eval_frame)
    rows = []
    for frame in frames:
        evaluation = evaluate(train.fit(frame, config), eval_frame)
        rows.append(
            {
                **{str(name): bucket["accuracy"] for name, bucket in evaluation["buckets"].items()},
                OVERALL: evaluation["overall"]["accuracy"],
            }
        )
    slices = sorted(str(name) for name in reference["buckets"])
    table = pd.DataFrame(rows, columns=[*slices, OVERALL])
    table.index.name = "refit"
    reference = {
        "labels": list(reference["labels"]),
        "overall": dict(reference["overall"]),
        "buckets": {str(name): dict(bucket) for name, bucket in reference["buckets"].items()},
    }
    return NoiseStudy(reference=reference, refits=table, seed=seed)
