"""Types shared by the tests and their fixtures (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
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


_sockets: list[Path] = []


def kernel_sockets() -> dict[str, str]:
    """``KernelManager`` options for a stock kernel that listens on Unix sockets, as forked kernels
    do (scripts/forkkernel/transport.py): on loopback ports, another process can be given one
    of its ports between the manager's choice and the kernel's bind (``ZMQError: Address
    already in use``). Each call names new sockets in one folder of this process (mode 0700),
    removed when it exits; jupyter_client removes a kernel's sockets when it shuts it down."""
    if not _sockets:
        _sockets.append(Path(tempfile.mkdtemp(prefix="kernel-ipc-tests-")))
        atexit.register(shutil.rmtree, _sockets[0], True)
    return {"transport": "ipc", "ip": str(_sockets[0] / uuid.uuid4().hex[:12])}
