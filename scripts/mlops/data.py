"""Seeded synthetic customer-churn data: generation, validation, loading and fingerprints.

The table imitates a telecom's customer export. Four customer segments differ in size and
in how hard churn is to predict (label noise, and an enterprise churn pattern that a linear
model cannot fit), so per-slice metrics tell a different story from the aggregate.

Three data files are produced, each byte-for-byte reproducible from its seed:

* ``churn_v1.csv``: the first training batch;
* ``churn_v2.csv``: a later batch whose distribution shifted (higher charges, more
  month-to-month contracts, more students);
* ``churn_eval.csv``: the frozen evaluation set. Its SHA-256 is pinned in
  :data:`FROZEN_EVAL_SHA256`; :func:`write_datasets` refuses to hand out an evaluation set
  with any other fingerprint, because every baseline comparison depends on it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .datafiles import FILENAMES, FROZEN_EVAL_SHA256, LABEL, LABELS, fingerprint
from .errors import DataError

SEGMENT = "segment"
ID = "customer_id"
SEGMENTS: tuple[str, ...] = ("consumer", "small_business", "student", "enterprise")
CATEGORICAL: tuple[str, ...] = (SEGMENT, "region", "contract", "payment_method")
NUMERIC: tuple[str, ...] = (
    "tenure_months",
    "monthly_charges",
    "support_calls_90d",
    "late_payments_12m",
    "data_usage_gb",
)
FEATURES: tuple[str, ...] = CATEGORICAL + NUMERIC
COLUMNS: tuple[str, ...] = (ID, *FEATURES, LABEL)

CATEGORY_VALUES: dict[str, tuple[str, ...]] = {
    SEGMENT: SEGMENTS,
    "region": ("north", "south", "east", "west"),
    "contract": ("month_to_month", "one_year", "two_year"),
    "payment_method": ("card", "bank_transfer", "invoice", "e_check"),
}


@dataclass(frozen=True)
class BatchSpec:
    """How one data file is drawn: its size, seed and distribution shift."""

    name: str
    rows: int
    seed: int
    segment_share: tuple[float, ...]  # in the order of SEGMENTS
    charge_factor: float = 1.0
    month_to_month_boost: float = 0.0
    support_call_factor: float = 1.0


_BASE_SHARE = (0.46, 0.27, 0.17, 0.10)
BATCHES: dict[str, BatchSpec] = {
    "v1": BatchSpec("v1", rows=6000, seed=1001, segment_share=_BASE_SHARE),
    "v2": BatchSpec(
        "v2",
        rows=4000,
        seed=2002,
        segment_share=(0.40, 0.24, 0.26, 0.10),
        charge_factor=1.15,
        month_to_month_boost=0.15,
        support_call_factor=1.3,
    ),
    "eval": BatchSpec("eval", rows=2400, seed=3003, segment_share=_BASE_SHARE),
}

# Per-segment behaviour: label noise (probability a label is flipped), contract mix,
# monthly charges (mean, sd) and a churn propensity offset.
_SEGMENT_TRAITS: dict[str, dict[str, Any]] = {
    "consumer": {"noise": 0.04, "contracts": (0.55, 0.25, 0.20), "charges": (70.0, 18.0), "offset": 0.0},
    "small_business": {"noise": 0.07, "contracts": (0.35, 0.35, 0.30), "charges": (95.0, 25.0), "offset": -0.3},
    "student": {"noise": 0.10, "contracts": (0.80, 0.15, 0.05), "charges": (45.0, 12.0), "offset": 0.5},
    "enterprise": {"noise": 0.12, "contracts": (0.15, 0.35, 0.50), "charges": (140.0, 35.0), "offset": -0.8},
}


def generate(batch: str | BatchSpec) -> pd.DataFrame:
    """Draw one batch of the churn table, deterministically from the batch's seed."""
    spec = BATCHES[batch] if isinstance(batch, str) else batch
    rng = np.random.default_rng(spec.seed)
    n = spec.rows
    segment = rng.choice(np.array(SEGMENTS), size=n, p=np.array(spec.segment_share))
    region = rng.choice(np.array(CATEGORY_VALUES["region"]), size=n, p=[0.3, 0.25, 0.25, 0.2])
    payment = rng.choice(np.array(CATEGORY_VALUES["payment_method"]), size=n, p=[0.4, 0.3, 0.15, 0.15])

    contract = np.empty(n, dtype=object)
    charges = np.empty(n)
    offset = np.empty(n)
    noise = np.empty(n)
    for name in SEGMENTS:
        mask = segment == name
        traits = _SEGMENT_TRAITS[name]
        shares = np.array(traits["contracts"], dtype=float)
        shares[0] += spec.month_to_month_boost
        shares /= shares.sum()
        contract[mask] = rng.choice(np.array(CATEGORY_VALUES["contract"]), size=mask.sum(), p=shares)
        mean, sd = traits["charges"]
        charges[mask] = rng.normal(mean * spec.charge_factor, sd, size=mask.sum())
        offset[mask] = traits["offset"]
        noise[mask] = traits["noise"]
    charges = np.clip(charges, 10.0, None).round(2)

    tenure = np.clip(rng.exponential(24.0, size=n).round(), 1, 72).astype(int)
    support_calls = rng.poisson(1.2 * spec.support_call_factor, size=n)
    late_payments = rng.poisson(0.6, size=n)
    usage = np.clip(rng.gamma(2.0, 9.0, size=n), 0.1, None).round(1)

    logit = (
        -1.1
        + offset
        + np.select([contract == "month_to_month", contract == "two_year"], [1.3, -1.4], 0.0)
        - 0.04 * tenure
        + 0.018 * (charges - 75.0)
        + 0.30 * support_calls
        + 0.45 * late_payments
        + np.where(payment == "e_check", 0.5, 0.0)
    )
    # Enterprise customers leave after repeated support trouble: a threshold effect that a
    # linear model only approximates, which makes this small slice the hardest one.
    is_ent = segment == "enterprise"
    logit = np.where(is_ent, logit - 0.25 * support_calls + np.where(support_calls >= 3, 2.5, -1.0), logit)
    # Students are price sensitive.
    logit = np.where(segment == "student", logit + 0.05 * (charges - 45.0), logit)

    churned = rng.random(n) < 1.0 / (1.0 + np.exp(-2.0 * logit))
    flipped = rng.random(n) < noise
    churned = np.where(flipped, ~churned, churned)

    prefix = {"v1": "A", "v2": "B", "eval": "E"}.get(spec.name, "X")
    frame = pd.DataFrame(
        {
            ID: [f"{prefix}{i:06d}" for i in range(n)],
            SEGMENT: segment,
            "region": region,
            "contract": contract.astype(str),
            "payment_method": payment,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls_90d": support_calls.astype(int),
            "late_payments_12m": late_payments.astype(int),
            "data_usage_gb": usage,
            LABEL: np.where(churned, "yes", "no"),
        }
    )
    return frame.loc[:, list(COLUMNS)]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A table as CSV with stable formatting (same frame, same bytes), UTF-8 encoded."""
    return frame.to_csv(index=False, lineterminator="\n", float_format="%.2f").encode()


@functools.cache
def batch_csv(name: str) -> bytes:
    """The CSV file of batch ``name`` (``"v1"``, ``"v2"``, ``"eval"``): drawn and formatted once per
    process, then kept. Every lab's setup cell writes the three files into a new workspace, and
    drawing and formatting them took about 0.1 s of that cell (Lab 00's whole setup cell: 0.13 s).
    The bytes are immutable, and a process forked from a warm interpreter that has called this
    (see ``scripts.mlops._preload``) inherits them."""
    if name not in BATCHES:
        raise DataError(f"no batch named {name!r}", f"choose from {sorted(BATCHES)}.")
    return csv_bytes(generate(name))


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV with stable formatting (same frame, same bytes)."""
    return _write_bytes(csv_bytes(frame), Path(path))


def _write_bytes(content: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def write_datasets(folder: str | Path, batches: Sequence[str] = tuple(FILENAMES)) -> dict[str, Path]:
    """Write ``churn_v1.csv``, ``churn_v2.csv`` and ``churn_eval.csv`` into ``folder``.

    Files that already exist with the right content are left alone. Returns the paths by
    batch name (``"v1"``, ``"v2"``, ``"eval"``); ``batches`` writes only those.
    """
    folder = Path(folder)
    paths: dict[str, Path] = {}
    unknown = sorted(set(batches) - set(FILENAMES))
    if unknown:
        raise DataError(f"no batch named {unknown}", f"choose from {sorted(FILENAMES)}.")
    for name, filename in FILENAMES.items():
        if name not in batches:
            continue
        path = folder / filename
        expected = batch_csv(name)  # compared, and written only if different
        if not path.exists() or path.read_bytes() != expected:
            _write_bytes(expected, path)
        paths[name] = path
    if "eval" not in paths:
        return paths
    found = fingerprint(paths["eval"])
    if found != FROZEN_EVAL_SHA256:
        raise DataError(
            f"the evaluation set at {paths['eval']} has fingerprint {found}, but the frozen "
            f"evaluation set is {FROZEN_EVAL_SHA256}",
            "the data generator or a library it depends on changed. Restore the generator, or "
            "re-freeze deliberately: update FROZEN_EVAL_SHA256 and regenerate every baseline.",
        )
    return paths


def validate(frame: pd.DataFrame, source: str = "the table", *, require_label: bool = True) -> pd.DataFrame:
    """Check a frame against the churn schema; return it with canonical dtypes.

    Raises :class:`DataError` naming the problem: no rows, missing columns, missing values,
    non-numeric values in a numeric column, unknown categories or unknown labels.
    """
    if frame.empty:
        raise DataError(f"{source} has no rows", "regenerate it with `python -m scripts.mlops data`.")
    required = list(FEATURES) + ([LABEL] if require_label else [])
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(
            f"{source} is missing column(s) {missing}; found {list(frame.columns)}",
            f"every churn table needs {required}.",
        )
    holes = [column for column in required if frame[column].isna().any()]
    if holes:
        raise DataError(f"{source} has missing values in {holes}", "drop or fill those rows before training.")
    frame = frame.copy()
    for column in NUMERIC:
        converted = pd.to_numeric(frame[column], errors="coerce")
        if converted.isna().any():
            bad = frame.loc[converted.isna(), column].iloc[0]
            raise DataError(f"{source}: column {column!r} must be numeric, found {bad!r}", "fix or drop that row.")
        frame[column] = converted.astype(float)
    for column in CATEGORICAL:
        frame[column] = frame[column].astype(str)
        unknown = sorted(set(frame[column].unique()) - set(CATEGORY_VALUES[column]))  # unique(): vectorised
        if unknown:
            raise DataError(
                f"{source}: column {column!r} has unknown value(s) {unknown}; expected {list(CATEGORY_VALUES[column])}",
                "map them to the known categories before training or scoring.",
            )
    if require_label:
        frame[LABEL] = frame[LABEL].astype(str)
        unknown = sorted(set(frame[LABEL].unique()) - set(LABELS))
        if unknown:
            raise DataError(
                f"{source}: label column {LABEL!r} has unknown label(s) {unknown}; expected {list(LABELS)}",
                "normalise the labels (for example 'Yes'/'1' -> 'yes') before training: a model trained on "
                "other label names cannot be compared with the baseline.",
            )
    return frame


def load(path: str | Path, *, require_label: bool = True) -> pd.DataFrame:
    """Read and validate a churn CSV. Raises :class:`DataError` with the fix on bad input."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist", "create the data with `python -m scripts.mlops data`.")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {path} is empty", "regenerate it with `python -m scripts.mlops data`.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(
            f"data file {path} is not a readable CSV: {exc}", "check that the file is a CSV export."
        ) from None
    return validate(frame, source=str(path), require_label=require_label)


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns, in schema order."""
    return frame.loc[:, list(FEATURES)]
