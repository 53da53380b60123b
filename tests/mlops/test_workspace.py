"""Workspaces: one folder per lab, relative SQLite URI, safe re-creation, env override."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from scripts.mlops import registry, train
from scripts.mlops.errors import MlopsError
from scripts.mlops.workspace import open_workspace


def test_workspace_uses_a_relative_sqlite_uri_and_holds_db_and_artifacts(ws) -> None:
    assert ws.tracking_uri == "sqlite:///.mlops/test/mlflow.db"
    assert mlflow.get_tracking_uri() == ws.tracking_uri
    assert ws.db.is_file() and ws.artifacts.is_dir() and ws.embedded
    experiment_id = ws.experiment("demo")
    location = mlflow.MlflowClient().get_experiment(experiment_id).artifact_location
    assert location == ws.artifacts.resolve().as_uri()
    default = mlflow.MlflowClient().get_experiment("0").artifact_location
    assert default == ws.artifacts.resolve().as_uri(), "the Default experiment must store artifacts in the workspace too"


def test_fresh_rerun_in_the_same_process_starts_from_an_empty_registry(ws, datasets: dict[str, Path]) -> None:
    train.train_and_log(datasets["v1"], datasets["eval"], register="churn-classifier")
    assert [v.version for v in registry.versions("churn-classifier")] == [1]
    again = open_workspace("test")  # what re-running a lab's setup cell does
    assert again.tracking_uri == ws.tracking_uri
    assert registry.model_names() == []
    kept = open_workspace("test", fresh=False)
    train.train_and_log(datasets["v1"], datasets["eval"], register="churn-classifier")
    open_workspace("test", fresh=False)
    assert [v.version for v in registry.versions("churn-classifier")] == [1]
    assert kept.db.is_file()


def test_two_workspaces_do_not_share_a_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, datasets) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    open_workspace("a")
    train.train_and_log(datasets["v1"], datasets["eval"], register="only-in-a")
    open_workspace("b")
    assert registry.model_names() == []
    open_workspace("a", fresh=False)
    assert registry.model_names() == ["only-in-a"]


def test_folder_that_is_not_a_workspace_is_never_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    precious = tmp_path / ".mlops" / "notes"
    precious.mkdir(parents=True)
    (precious / "thesis.txt").write_text("do not lose me")
    with pytest.raises(MlopsError, match="not a lab workspace"):
        open_workspace("notes")
    assert (precious / "thesis.txt").read_text() == "do not lose me"
    for bad in ("", "../escape", "/abs"):
        with pytest.raises(MlopsError, match="invalid workspace name"):
            open_workspace(bad)


def test_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    ws = open_workspace("env")
    assert ws.tracking_uri == f"sqlite:///{other}" and not ws.embedded
    assert mlflow.get_tracking_uri() == ws.tracking_uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("MLOPS_WORKSPACE_ROOT", "runs")
    ws = open_workspace("moved")
    assert ws.root == Path("runs/moved") and ws.tracking_uri == "sqlite:///runs/moved/mlflow.db"


def test_opening_a_workspace_leaves_the_environment_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow exports the URI it is given; a workspace must not, or a relative sqlite URI would
    leak into every kernel, server and subprocess started later."""
    import os

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    open_workspace("quiet")
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_tracking_uri() == "sqlite:///.mlops/quiet/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mine.db")
    open_workspace("quiet", fresh=False)
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///mine.db"
    assert mlflow.get_tracking_uri() == "sqlite:///mine.db"
