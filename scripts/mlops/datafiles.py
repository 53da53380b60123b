"""The churn data files' names, label column and fingerprints, without pandas.

:mod:`scripts.mlops.data` generates, validates and loads the files (and re-exports these
names); commands that only need to name a file, check its labels or hash it, such as
``doctor``, import this module instead and stay fast (pandas alone costs about a second).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import DataError

LABEL = "churn"
LABELS: tuple[str, ...] = ("no", "yes")
FILENAMES: dict[str, str] = {"v1": "churn_v1.csv", "v2": "churn_v2.csv", "eval": "churn_eval.csv"}

#: Fingerprint of the frozen evaluation set. Changing the generator changes this value,
#: which invalidates every committed baseline: do it deliberately, never by accident.
FROZEN_EVAL_SHA256 = "sha256:dfbec59bd7f8492e88b60a0b8e07cbef24dea42b3feb13e10ee30ebbdf9a6c07"


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as ``"sha256:<hex>"``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"cannot fingerprint {path}: no such file", "check the path (is the workspace created?)")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"
