"""Bad input and broken environments get one ``error:`` / ``fix:`` pair and exit 1 -- never a traceback.

Every command is run with a table of bad inputs; a damaged or emptied registry database is
named instead of silently replaced; an unreachable tracking server fails within seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.mlops import baseline_refresh, cli
from scripts.mlops.errors import MlopsError
from scripts.mlops.procs import free_port
from scripts.mlops.workspace import open_workspace
from tests.support import Production

WS = ["--workspace", baseline_refresh.WORKSPACE]
MODEL = baseline_refresh.MODEL_NAME



def _deep_json(tmp: Path) -> str:
    path = tmp / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    return str(path)


def _a_file(tmp: Path) -> str:
    path = tmp / "plain.txt"
    path.write_text("not a folder\n")
    return str(path)


# (id, argv builder(tmp, eval_csv, baseline) -> argv, text the error line must contain)
BAD_INPUTS = [
    ("port out of range", lambda t, e, b: ["serve", "--model", MODEL, "--alias", "production", "--port", "70000"],
     "is not a port number"),
    ("evaluate a missing run", lambda t, e, b: [*WS, "evaluate", "--model-uri", "runs:/0123456789abcdef/model",
                                                "--data", e], "cannot load the model"),
    ("evaluate a missing path", lambda t, e, b: [*WS, "evaluate", "--model-uri", str(t / "nowhere"), "--data", e],
     "cannot load the model"),
    ("evaluate --out is a folder", lambda t, e, b: [*WS, "evaluate", "--model-uri", f"models:/{MODEL}/1", "--data", e,
                                                    "--out", str(t)], "Is a directory"),
    ("data --out is a file", lambda t, e, b: [*WS, "data", "--out", _a_file(t)], "File exists"),
    ("deeply nested JSON", lambda t, e, b: ["compare-baseline", "--candidate", _deep_json(t), "--baseline", b],
     "too deeply nested"),
    ("missing version", lambda t, e, b: [*WS, "promote", "--model", MODEL, "--version", "42", "--alias", "staging"],
     "has no version 42"),
    ("version zero", lambda t, e, b: [*WS, "promote", "--model", MODEL, "--version", "0", "--alias", "staging"],
     "must be at least 1"),
    ("huge actor", lambda t, e, b: [*WS, "promote", "--model", MODEL, "--version", "1", "--alias", "staging",
                                    "--actor", "x" * 100_000], "too long"),
    ("reserved alias", lambda t, e, b: [*WS, "rollback", "--model", MODEL, "--alias", "latest"], "invalid alias"),
    ("unknown model", lambda t, e, b: [*WS, "history", "--model", "nope"], "no registered model named 'nope'"),
    ("model name with a slash", lambda t, e, b: [*WS, "versions", "--model", "a/b"], "invalid model name"),
    ("bad workspace name", lambda t, e, b: ["--workspace", "../x", "versions", "--model", MODEL],
     "invalid workspace name"),
    ("latency calls zero", lambda t, e, b: [*WS, "gate", "--candidate-uri", f"models:/{MODEL}/1", "--baseline", b,
                                            "--data", e, "--latency-calls", "0"], "latency calls must be"),
    ("unknown command option", lambda t, e, b: ["versions", "--model", MODEL, "--modle", "x"],
     "unrecognized arguments"),
]


@pytest.mark.parametrize(("name", "argv", "text"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_every_bad_input_is_one_error_and_fix_pair(
    name: str, argv, text: str, prod: Production, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (prod.root / baseline_refresh.WORKSPACE / "mlflow.db").read_bytes()
    with pytest.raises(SystemExit) if name in ("port out of range", "version zero", "huge actor",
                                               "unknown command option") else contextlib.nullcontext() as exited:
        status = cli.main(argv(tmp_path, str(prod.eval_path), str(prod.baseline)))
    if exited is not None and getattr(exited, "value", None) is not None:
        status = exited.value.code
    err = capsys.readouterr().err
    assert status == 1, err
    lines = [line for line in err.splitlines() if line.startswith(("error:", "fix:"))]
    assert [line.split(":")[0] for line in lines] == ["error", "fix"], err
    assert text in lines[0], err
    assert "Traceback" not in err and "unexpected" not in err, err
    assert (prod.root / baseline_refresh.WORKSPACE / "mlflow.db").read_bytes() == before, "nothing was changed"


def test_a_model_name_with_a_quote_can_be_queried(prod: Production, capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    source = client.get_model_version(MODEL, "1")
    client.create_registered_model("o'brien")
    client.create_model_version("o'brien", source.source, run_id=source.run_id, model_id=source.model_id)
    assert cli.main([*WS, "versions", "--model", "o'brien"]) == 0
    assert cli.main([*WS, "promote", "--model", "o'brien", "--version", "1", "--alias", "staging"]) == 0
    assert "o'brien@staging moved from unset to version 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "text"),
    [(b"", r"is empty \(0 bytes\)"), (b"these bytes are not a database\n" * 10, "is not an SQLite database")],
    ids=["empty", "overwritten"],
)
def test_a_damaged_database_is_named_and_left_as_it_is(
    content: bytes, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLOPS_WORKSPACE_ROOT", raising=False)
    open_workspace("lab")
    db = tmp_path / ".mlops" / "lab" / "mlflow.db"
    db.write_bytes(content)
    with pytest.raises(MlopsError, match=text) as excinfo:
        open_workspace("lab", fresh=False)
    assert "backup" in str(excinfo.value.fix)
    assert db.read_bytes() == content, "the damaged file is evidence: never replaced"


def test_a_truncated_database_gives_one_clear_error(
    prod: Production, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / ".mlops" / "cut"
    folder.mkdir(parents=True)
    (folder / ".mlops-workspace").write_text("test\n")
    whole = (prod.root / baseline_refresh.WORKSPACE / "mlflow.db").read_bytes()
    (folder / "mlflow.db").write_bytes(whole[: len(whole) // 3])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLOPS_WORKSPACE_ROOT", raising=False)
    assert cli.main(["--workspace", "cut", "versions", "--model", MODEL]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "fix: " in err and "Traceback" not in err, err
    assert "damaged" in err or "malformed" in err, err


def test_an_unreachable_tracking_server_fails_fast_with_the_uri(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_HTTP_REQUEST")}
    env["MLFLOW_TRACKING_URI"] = uri
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "scripts.mlops", "versions", "--model", MODEL], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - start
    assert done.returncode == 1, done.stderr
    assert f"the tracking server {uri} does not answer" in done.stderr
    assert "fix: start the server" in done.stderr and "Traceback" not in done.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"


def test_the_users_own_retry_settings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.mlops import registry

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    registry.fail_fast_defaults()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == registry.FAIL_FAST_ENV["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]


def test_compare_baseline_module_entry_point_still_works(prod: Production) -> None:
    done = subprocess.run([sys.executable, "-m", "scripts.mlops.compare_baseline", "--candidate", str(prod.baseline),
                           "--baseline", str(prod.baseline)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PASS: all 4 buckets")


def test_the_cli_does_not_import_mlflow_or_pandas_for_help() -> None:
    code = ("import sys; from scripts.mlops.cli import build_parser; build_parser(); "
            "print(json.dumps(['mlflow' in sys.modules, 'pandas' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout) == [False, False], done.stderr


def test_a_read_only_workspace_reads_and_refuses_writes_clearly(prod: Production, tmp_path: Path) -> None:
    """A workspace on a read-only mount (bubblewrap's --ro-bind: enforced even for root)."""
    import shutil

    bwrap = shutil.which("bwrap")
    assert bwrap, "this test needs bubblewrap (Debian package 'bubblewrap'); `make venv` installs it"
    shutil.copytree(prod.root / baseline_refresh.WORKSPACE, tmp_path / ".mlops" / "ro")
    base = [bwrap, "--dev-bind", "/", "/", "--ro-bind", str(tmp_path / ".mlops"), str(tmp_path / ".mlops"),
            "--chdir", str(tmp_path), sys.executable, "-m", "scripts.mlops", "--workspace", "ro"]
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "MLOPS_WORKSPACE_ROOT")}
    read = subprocess.run([*base, "history", "--model", MODEL], env=env, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    write = subprocess.run([*base, "promote", "--model", MODEL, "--version", "1", "--alias", "staging"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert write.returncode == 1, write.stdout + write.stderr
    assert "read-only" in write.stderr and "fix: " in write.stderr and "Traceback" not in write.stderr, write.stderr
