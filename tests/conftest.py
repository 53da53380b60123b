"""Shared fixtures: every test that touches MLflow gets its own workspace in a temp folder."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from scripts.mlops import baseline_refresh, data
from scripts.mlops.workspace import Workspace, open_workspace
from tests import work_units
from tests.support import Production, TrainedFactory, TrainedWorkspace

REPO = Path(__file__).resolve().parents[1]


_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_SESSION_ENV = {key: os.environ.get(key) for key in _MLFLOW_ENV}


@pytest.fixture(autouse=True)
def _restore_mlflow_environment() -> Iterator[None]:
    """open_workspace leaves the environment as it found it, but a test that calls
    mlflow.set_tracking_uri itself exports MLFLOW_TRACKING_URI. After every test the variables
    go back to their values at session start, so nothing leaks into subprocesses, servers or
    the nbval kernels that run later."""
    yield
    for key, value in _SESSION_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A fresh embedded MLflow workspace under ``tmp_path`` (the test's current folder)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLOPS_WORKSPACE_ROOT", raising=False)
    import mlflow

    workspace = open_workspace("test")
    yield workspace
    if mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="session")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three seeded data files, written once per test session (read-only by convention)."""
    return data.write_datasets(tmp_path_factory.mktemp("data"))


@pytest.fixture
def repo() -> Path:
    return REPO


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown when it is not loaded
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with the units of :mod:`tests.work_units`, handed out heaviest first.
    Marking tests with ``xdist_group`` under ``--dist loadgroup`` would group them too, but
    pytest 9.2's structured node ids make xdist 3.8 ignore those marks: pytest-dev/pytest-xdist#1386."""
    if config.getvalue("dist") != "loadfile":
        return None
    return work_units.scheduler(config, log)


def pytest_collection_finish(session: pytest.Session) -> None:
    """nbval runs the reference notebooks in python3-forked (see pyproject's addopts): when this
    process will run some, start the kernels' zygote now, so that its imports overlap the tests
    that run before the first notebook. An xdist worker does not know yet whether it will (one of
    them does, see :mod:`tests.work_units`): its zygote starts with its first notebook. A run that
    only collects (``--collect-only``) runs none: its zygote would only delay its exit by the
    seconds of imports it has to finish before it can stop."""
    from scripts.forkkernel import KERNEL_NAME, client

    if session.config.getoption("nbval_kernel_name", None) != KERNEL_NAME or "PYTEST_XDIST_WORKER" in os.environ:
        return
    if session.config.option.collectonly:
        return
    if not any(item.nodeid.startswith("solutions/") for item in session.items):
        return
    from jupyter_client.kernelspec import KernelSpecManager

    interpreter = client.interpreter_part(KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv)
    if interpreter is not None:
        client.warm_up(interpreter)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Production:
    """Built once per test module by the baseline refresh recipe (as `make baseline` does)."""
    root = tmp_path_factory.mktemp("production")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLOPS_WORKSPACE_ROOT", str(root))
        baseline = baseline_refresh.regenerate(root / "eval_baseline.json")
    folder = root / baseline_refresh.WORKSPACE / "data"
    return Production(root, baseline, {name: folder / filename for name, filename in data.FILENAMES.items()})


@pytest.fixture
def prod(production: Production, monkeypatch: pytest.MonkeyPatch) -> Iterator[Production]:
    """Point MLflow (and the CLI's --workspace) at the module's production registry for one test."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_WORKSPACE_ROOT", str(production.root))
    open_workspace(baseline_refresh.WORKSPACE, fresh=False, root=production.root)
    yield production


@pytest.fixture(scope="module")
def trained_workspace(tmp_path_factory: pytest.TempPathFactory, datasets: dict[str, Path]) -> TrainedFactory:
    """Factory: ``trained_workspace(name, seeds=(42,), aliases={})`` trains one logreg version per seed.

    Version ``i + 1`` is trained with ``seeds[i]``; ``aliases`` maps alias -> version and is
    set through the promotion history (actor "test"). Training happens once per module; each
    test re-enters the workspace with ``.enter(monkeypatch)``.
    """
    from scripts.mlops import promotion
    from scripts.mlops.train import TrainConfig, train_and_log

    def make(name: str, *, seeds: Sequence[int] = (42,), aliases: Mapping[str, int] | None = None,
             model: str = "churn-classifier") -> TrainedWorkspace:
        root = tmp_path_factory.mktemp(name)
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            patch.delenv("MLFLOW_TRACKING_URI", raising=False)
            patch.delenv("MLOPS_WORKSPACE_ROOT", raising=False)
            open_workspace(name)
            runs = {}
            for index, seed in enumerate(seeds, start=1):
                result = train_and_log(datasets["v1"], datasets["eval"], TrainConfig(model="logreg", seed=seed),
                                       register=model)
                runs[index] = result.run_id
            for alias, version in (aliases or {}).items():
                promotion.promote(model, version, alias, actor="test")
        return TrainedWorkspace(root, name, model, runs)

    return make
