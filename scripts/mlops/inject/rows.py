"""Which rows and labels an injection corrupts: pure, seeded functions.

Which rows a slice corruption flips is decided per row, from a seeded hash of the row's
feature values: the same row is flipped whether it arrives alone or in a batch, and the
realised share of flipped rows is close to, not exactly, ``fraction``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MlopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def corrupted_rows(frame: "pd.DataFrame", slice_name: str, fraction: float, seed: int) -> "np.ndarray":
    """Boolean mask of the rows a :class:`SliceCorruption` flips.

    A row is flipped when its segment is ``slice_name`` and a seeded hash of its feature
    values, read as a number in [0, 1), is below ``fraction``.
    """
    import numpy as np
    import pandas as pd

    from .. import data

    if data.SEGMENT not in frame.columns:
        raise MlopsError(
            f"the input has no {data.SEGMENT!r} column, so no slice can be selected",
            f"pass the full feature table {list(data.FEATURES)}.",
        )
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

    from .. import data

    values = np.asarray(labels, dtype=object)
    no, yes = data.LABELS
    return np.where(values == no, yes, np.where(values == yes, no, values))


def check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise MlopsError(f"fraction must be in (0, 1], got {fraction!r}", "e.g. 0.15 corrupts about 15% of the slice.")
    return float(fraction)


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MlopsError(f"seed must be a whole number >= 0, got {seed!r}", "pass e.g. --seed 0.")
    return seed


def noisy_labels(frame: "pd.DataFrame", fraction: float, seed: int, flip_from: str | None = "yes") -> "pd.DataFrame":
    """A copy of ``frame`` with a seeded ``fraction`` of labels flipped.

    ``flip_from="yes"`` flips only churners to "no" (churn events lost upstream, a common
    pipeline bug); ``None`` flips either way (symmetric noise, which logistic regression
    mostly shrugs off).
    """
    import numpy as np

    from .. import data

    check_fraction(fraction)
    rng = np.random.default_rng(check_seed(seed))
    labels = frame[data.LABEL].to_numpy()
    chosen = rng.random(len(frame)) < fraction
    if flip_from is not None:
        chosen &= labels == flip_from
    noisy = frame.copy()
    noisy[data.LABEL] = np.where(chosen, flip_labels(labels), labels)
    return noisy
