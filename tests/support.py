"""Types shared by the tests and their fixtures (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from scripts.mlops.warm import WarmProcess


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


@dataclass(frozen=True)
class ForkedScript:
    """``python -m MODULE ARGS`` in a child of the warm interpreter (:mod:`scripts.mlops.warm`, as the
    deploy gate's steps run): a separate process that starts in milliseconds, MLflow imported.

    The tests that race processes use it; ``MODULE`` is a script the test wrote into ``folder``.
    """

    process: "WarmProcess"
    out: Path
    err: Path

    @classmethod
    def start(cls, folder: Path, module: str, args: list[str], env: dict[str, str], tag: str) -> "ForkedScript":
        from scripts.mlops import warm

        out, err = folder / f"{module}-{tag}.out", folder / f"{module}-{tag}.err"
        process = warm.start([module, *args], env=env, cwd=str(folder), output=str(out), errors=str(err))
        return cls(process, out, err)

    def last_line(self, timeout: float) -> str:
        """Wait for the script to end; it must exit 0 (else its errors are shown). Its last printed line."""
        code = self.process.wait(timeout)
        assert code == 0, f"{self.out.stem} exited with {code}: {self.err.read_text()[-2000:]}"
        return self.out.read_text().strip().splitlines()[-1]


#: ``trained_workspace(name, seeds=(42,), aliases={})`` (the fixture in tests/conftest.py).
TrainedFactory = Callable[..., TrainedWorkspace]
