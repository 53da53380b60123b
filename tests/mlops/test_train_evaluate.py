"""Training is deterministic and logs what a reviewer needs; evaluation has the shared shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from scripts.mlops import data, evaluate, registry, train
from scripts.mlops.errors import MlopsError, RegistryError
from scripts.mlops.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


def test_training_is_deterministic(datasets: dict[str, Path]) -> None:
    frame = data.load(datasets["v1"])
    probe = data.features(data.load(datasets["eval"]))
    for kind in ("logreg", "hgb"):
        config = train.TrainConfig(model=kind, seed=7)
        a = train.fit(frame, config).predict_proba(probe)
        b = train.fit(frame, config).predict_proba(probe)
        np.testing.assert_array_equal(a, b)


def test_unknown_model_kind_and_single_label_are_refused(datasets: dict[str, Path]) -> None:
    frame = data.load(datasets["v1"])
    with pytest.raises(MlopsError, match="unknown model kind 'forest'"):
        train.fit(frame, train.TrainConfig(model="forest"))  # type: ignore[arg-type]
    with pytest.raises(MlopsError, match="single label"):
        train.fit(frame[frame[data.LABEL] == "no"])


def test_evaluation_document_shape_and_counts(datasets: dict[str, Path]) -> None:
    model = train.fit(data.load(datasets["v1"]))
    document = evaluate.evaluate_file(model, datasets["eval"], model="m", version=1)
    assert document["eval_set_hash"] == data.FROZEN_EVAL_SHA256
    assert set(document["buckets"]) == set(data.SEGMENTS)
    assert sum(bucket["n"] for bucket in document["buckets"].values()) == document["overall"]["n"] == 2400
    assert 0.7 < document["overall"]["accuracy"] < 0.9
    assert document["labels"] == ["no", "yes"]
    weighted = sum(b["accuracy"] * b["n"] for b in document["buckets"].values()) / document["overall"]["n"]
    assert weighted == pytest.approx(document["overall"]["accuracy"], abs=1e-3)


def test_score_refuses_empty_and_mismatched_inputs() -> None:
    import pandas as pd

    with pytest.raises(MlopsError, match="empty evaluation set"):
        evaluate.score(pd.Series([], dtype=str), [], pd.Series([], dtype=str))
    with pytest.raises(MlopsError, match="2 predictions for 3 rows"):
        evaluate.score(pd.Series(["yes", "no", "no"]), ["yes", "no"], pd.Series(["a", "a", "b"]))


def test_train_and_log_records_params_metrics_fingerprints_and_registers(ws: Workspace, datasets: dict[str, Path]) -> None:
    result = train.train_and_log(datasets["v1"], datasets["eval"], register="churn-classifier")
    assert result.version == 1
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.params["model"] == "logreg"
    assert run.data.params["train_sha256"] == data.fingerprint(datasets["v1"])
    assert run.data.params["eval_sha256"] == data.FROZEN_EVAL_SHA256
    assert run.data.metrics["accuracy"] == result.accuracy
    for segment in data.SEGMENTS:
        assert run.data.metrics[f"accuracy.{segment}"] == result.evaluation["buckets"][segment]["accuracy"]
        assert run.data.metrics[f"n.{segment}"] == result.evaluation["buckets"][segment]["n"]
    artifact = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/evaluation.json")
    assert artifact["overall"] == result.evaluation["overall"]
    # the artifacts stay inside the workspace
    assert any(ws.artifacts.rglob("MLmodel"))
    # the registered model reloads with its signature and predicts the same labels
    model = mlflow.pyfunc.load_model("models:/churn-classifier/1")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == list(data.FEATURES)
    reloaded = evaluate.evaluate_file(model, datasets["eval"])
    assert reloaded["overall"] == result.evaluation["overall"]
    second = train.train_and_log(datasets["v1"], datasets["eval"], train.TrainConfig(model="hgb"), register="churn-classifier")
    assert second.version == 2
    assert [v.version for v in registry.versions("churn-classifier")] == [1, 2]


def test_registry_errors_name_the_fix(ws: Workspace, datasets: dict[str, Path]) -> None:
    with pytest.raises(RegistryError, match="no registered model named 'nope'; registered models: none"):
        registry.versions("nope")
    train.train_and_log(datasets["v1"], datasets["eval"], register="churn-classifier")
    with pytest.raises(RegistryError, match=r"registered models: \['churn-classifier'\]"):
        registry.require_model("churn")
    with pytest.raises(RegistryError, match=r"has no version 7; existing versions: \[1\]"):
        registry.get_version("churn-classifier", 7)
    with pytest.raises(RegistryError, match="has no alias 'champion'"):
        registry.version_for_alias("churn-classifier", "champion")
    info = registry.set_alias("churn-classifier", "champion", 1)
    assert info.aliases == ("champion",)
    assert registry.version_for_alias("churn-classifier", "champion").version == 1


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "scripts.mlops", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_train_and_evaluate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The commands in-process (fast); the entry point itself is exercised below."""
    from scripts.mlops.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["train", "--register", "churn-classifier"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == 1 and summary["accuracy"] > 0.7
    eval_csv = tmp_path / ".mlops" / "cli" / "data" / "churn_eval.csv"
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model-uri", "models:/churn-classifier/1", "--data", str(eval_csv), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["overall"]["accuracy"] == summary["accuracy"]
    assert main(["evaluate", "--model-uri", "models:/churn-classifier@champion", "--data", str(eval_csv)]) == 1
    assert "has no alias 'champion'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,churn\nA1,yes\n")
    assert main(["train", "--data", str(bad), "--eval", str(eval_csv)]) == 1
    assert "missing column(s)" in capsys.readouterr().err


def test_cli_entry_point_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    done = _cli("versions", "--model", "churn", cwd=tmp_path)
    assert done.returncode == 1
    assert "error: no registered model named 'churn'" in done.stderr and "fix:" in done.stderr
    assert "Traceback" not in done.stderr


def test_dropping_an_input_column_changes_the_signature_not_the_evaluation(ws: Workspace, datasets: dict[str, Path]) -> None:
    config = train.TrainConfig(drop=("data_usage_gb",))
    assert "data_usage_gb" not in config.features() and len(config.features()) == len(data.FEATURES) - 1
    result = train.train_and_log(datasets["v1"], datasets["eval"], config, register="no-usage")
    model = mlflow.pyfunc.load_model("models:/no-usage/1")
    assert "data_usage_gb" not in [c.name for c in model.metadata.get_input_schema().inputs]
    assert mlflow.MlflowClient().get_run(result.run_id).data.params["dropped_columns"] == "data_usage_gb"
    assert set(result.evaluation["buckets"]) == set(data.SEGMENTS)  # scored on the full evaluation file
    with pytest.raises(MlopsError, match=r"cannot drop unknown input column\(s\) \['usage'\]"):
        train.TrainConfig(drop=("usage",)).features()
