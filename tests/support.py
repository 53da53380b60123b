"""Types shared by the tests and their fixtures (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


@dataclass(frozen=True)
class Production:
    """A registry with churn-classifier v1 @production and its baseline file."""

    root: Path
    baseline: Path
    datasets: dict[str, Path]

    @property
    def eval_path(self) -> Path:
        return self.datasets["eval"]


@dataclass(frozen=True)
class TrainedWorkspace:
    """A workspace with trained, registered versions (see the ``trained_workspace`` factory fixture)."""

    root: Path
    name: str
    model: str
    runs: dict[int, str]

    def enter(self, monkeypatch: "pytest.MonkeyPatch") -> None:
        """Make this the current folder and MLflow's store for one test."""
        from scripts.mlops.workspace import open_workspace

        monkeypatch.chdir(self.root)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.delenv("MLOPS_WORKSPACE_ROOT", raising=False)
        open_workspace(self.name, fresh=False)


#: ``trained_workspace(name, seeds=(42,), aliases={})`` (the fixture in tests/conftest.py).
TrainedFactory = Callable[..., TrainedWorkspace]
