"""doctor: each check on a healthy and a broken store, its timings, and that it changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.mlops import cli, data, doctor
from tests.support import TrainedFactory, TrainedWorkspace

MODEL = "churn-classifier"
REPO_BASELINE = Path(__file__).resolve().parents[2] / "eval_baseline.json"


@pytest.fixture(scope="module")
def healthy(trained_workspace: TrainedFactory) -> TrainedWorkspace:
    return trained_workspace("doctor-healthy", aliases={"production": 1, "staging": 1})


def _folder(trained: TrainedWorkspace) -> Path:
    return trained.root / ".mlops" / trained.name


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}


def _doctor(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "scripts.mlops", "doctor", *args], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - start


def test_a_healthy_workspace_passes_every_check_in_under_3_s(healthy: TrainedWorkspace, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"eval_set_hash": data.FROZEN_EVAL_SHA256, "labels": list(data.LABELS)}))
    folder = _folder(healthy)
    data.write_datasets(folder / "data")
    done, seconds = _doctor("--workspace", str(folder), "--baseline", str(baseline),
                            "--data", str(folder / "data" / "churn_v2.csv"), cwd=healthy.root)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("store", "reachable", "schema", "lock", "models", "aliases", "artifacts", "eval_hash", "labels"):
        assert f"✓ {check}" in done.stdout, check
    assert "✗" not in done.stdout and "healthy" in done.stdout
    assert seconds < 3.0, f"doctor took {seconds:.2f} s on a healthy workspace"


def test_doctor_reads_an_embedded_store_without_mlflow_or_pandas_and_writes_nothing(healthy: TrainedWorkspace) -> None:
    """Importing MLflow (~2 s) or pandas (~1 s) would use up the 3 s budget on a busy machine."""
    folder = _folder(healthy)
    paths = data.write_datasets(folder / "data")
    db = folder / "mlflow.db"
    before = db.stat().st_mtime_ns
    options = f"workspace={str(folder)!r}, data=Path({str(paths['v2'])!r}), baseline=Path({str(REPO_BASELINE)!r})"
    code = ("import sys, json; from pathlib import Path; from scripts.mlops import doctor; "
            f"r = doctor.diagnose(doctor.Options({options})); "
            "print(json.dumps([r.healthy, 'mlflow' in sys.modules, 'pandas' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=healthy.root, env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert json.loads(done.stdout) == [True, False, False], done.stderr
    assert db.stat().st_mtime_ns == before


def test_json_output_lists_every_finding(healthy: TrainedWorkspace) -> None:
    done, _ = _doctor("--workspace", str(_folder(healthy)), "--json", cwd=healthy.root)
    document = json.loads(done.stdout)
    assert done.returncode == 0 and document["healthy"] and document["failed"] == []
    assert {f["check"] for f in document["findings"]} >= {"store", "reachable", "schema", "lock", "models", "aliases"}


def test_a_workspace_name_resolves_under_the_workspace_root(healthy: TrainedWorkspace) -> None:
    done, _ = _doctor("--workspace", healthy.name, cwd=healthy.root)
    assert done.returncode == 0, done.stdout
    assert str(_folder(healthy).resolve() / "mlflow.db") in done.stdout


def test_a_tracking_uri_in_the_environment_that_overrides_the_workspace_is_a_warning(
    healthy: TrainedWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    report = doctor.diagnose(doctor.Options(workspace=str(_folder(healthy))))
    assert report.healthy  # the workspace itself is fine ...
    warnings = [f.detail for f in report["store"] if f.status == "warn"]
    assert warnings and "MLFLOW_TRACKING_URI=http://127.0.0.1:9 is set" in warnings[0]  # ... but it is not what runs


def test_a_missing_database_is_reported_not_created(tmp_path: Path) -> None:
    done, _ = _doctor("--workspace", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert done.returncode == 1
    assert "✗ reachable" in done.stdout and "does not exist" in done.stdout and "fix:" in done.stdout
    assert not (tmp_path / "nowhere").exists()


def test_an_unset_tracking_uri_is_a_warning_naming_mlflows_default(tmp_path: Path) -> None:
    done, _ = _doctor(cwd=tmp_path)
    assert done.returncode == 1  # and nothing is there
    assert "MLFLOW_TRACKING_URI is unset" in done.stdout
    assert f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}" in done.stdout
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("with_mlruns", [False, True])
def test_mlflow_default_uri_matches_the_installed_mlflow(tmp_path: Path, with_mlruns: bool) -> None:
    if with_mlruns:
        (tmp_path / "mlruns" / "0").mkdir(parents=True)
        (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: Default\n")
    done = subprocess.run([sys.executable, "-c", "import mlflow; print(mlflow.get_tracking_uri())"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert doctor.mlflow_default_uri(tmp_path) == done.stdout.strip()


def test_the_head_revision_is_the_one_mlflow_migrates_to() -> None:
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert doctor.mlflow_head_revision() == _get_latest_schema_revision()


def test_an_old_schema_revision_fails_with_the_upgrade_command(healthy: TrainedWorkspace, tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_folder(healthy) / "mlflow.db", db)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0584bdc529eb'")
    finding = doctor.check_schema(db)
    assert finding.failed and "0584bdc529eb" in finding.detail
    assert finding.fix is not None and "mlflow db upgrade" in finding.fix


def test_an_empty_registry_fails_the_models_check(ws: object) -> None:
    report = doctor.diagnose(doctor.Options(workspace=".mlops/test"))
    assert report.failed_checks() == ["models"]


def test_a_missing_production_alias_and_a_missing_staging_alias(trained_workspace: TrainedFactory) -> None:
    bare = trained_workspace("doctor-bare")
    report = doctor.diagnose(doctor.Options(workspace=str(_folder(bare))))
    assert report.failed_checks() == ["aliases"]
    statuses = {f.detail.split(" ")[3]: f.status for f in report["aliases"]}
    assert statuses == {f"{MODEL}@production": "fail", f"{MODEL}@staging": "warn"}


def test_an_evaluation_set_other_than_the_baselines_fails(healthy: TrainedWorkspace, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"eval_set_hash": data.FROZEN_EVAL_SHA256, "labels": list(data.LABELS)}))
    other = data.write_csv(data.generate("eval").head(100), tmp_path / "eval_small.csv")
    report = doctor.diagnose(doctor.Options(workspace=str(_folder(healthy)), baseline=baseline, eval_file=other))
    assert report.failed_checks() == ["eval_hash"]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A socket on 127.0.0.1 that accepts connections into its backlog and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_a_server_that_never_answers_is_reported_in_under_5_s(silent_server: int, tmp_path: Path) -> None:
    done, seconds = _doctor("--tracking-uri", f"http://127.0.0.1:{silent_server}", cwd=tmp_path)
    assert done.returncode == 1
    assert "✗ reachable" in done.stdout and "did not answer within" in done.stdout
    assert seconds < 5.0, f"doctor took {seconds:.2f} s against a silent server"


def test_a_refused_connection_is_reported_in_under_5_s(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done, seconds = _doctor("--tracking-uri", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert done.returncode == 1 and "Connection refused" in done.stdout
    assert seconds < 5.0


def test_a_port_in_use_names_the_owning_process(silent_server: int) -> None:
    finding = doctor.check_port(silent_server)
    assert finding.failed and f"pid {os.getpid()}" in finding.detail
    assert finding.fix is not None and f"kill {os.getpid()}" in finding.fix and "pkill" in finding.fix


def test_labels_spelled_differently_fail_with_the_normalise_fix(tmp_path: Path) -> None:
    frame = data.generate("v2")
    frame[data.LABEL] = frame[data.LABEL].str.upper()
    path = data.write_csv(frame, tmp_path / "batch.csv")
    finding = doctor.check_labels(path, data.LABELS, data.LABEL)
    assert finding.failed and "['NO', 'YES']" in finding.detail
    assert finding.fix is not None and "normalise" in finding.fix and "baseline" in finding.fix


def test_doctor_is_listed_in_the_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "doctor" in capsys.readouterr().out
