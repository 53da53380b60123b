"""Types shared by the tests and their fixtures (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Production:
    """A registry with churn-classifier v1 @production and its baseline file."""

    root: Path
    baseline: Path
    datasets: dict[str, Path]

    @property
    def eval_path(self) -> Path:
        return self.datasets["eval"]
