"""Serving a registry alias over HTTP (scripts.mlops.app) and running servers (scripts.mlops.server)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import mlflow
import pytest

from scripts.mlops import cli, data, promotion
from scripts.mlops.app import create_app, listening_socket
from scripts.mlops.errors import MlopsError, RegistryError
from scripts.mlops.server import running_server, running_servers
from tests.support import TrainedFactory, TrainedWorkspace

MODEL = "churn-classifier"


@pytest.fixture(scope="module")
def registry_ws(trained_workspace: TrainedFactory) -> TrainedWorkspace:
    """Version 1 (seed 42) @staging, version 2 (seed 7) @production."""
    return trained_workspace("serve", seeds=(42, 7), aliases={"staging": 1, "production": 2})


@pytest.fixture(autouse=True)
def _in_workspace(registry_ws: TrainedWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    registry_ws.enter(monkeypatch)


@pytest.fixture(scope="module")
def records(datasets: dict[str, Path]) -> list[dict[str, Any]]:
    """Three valid records from the evaluation set, as JSON-ready dicts."""
    frame = data.features(data.load(datasets["eval"])).head(3)
    return json.loads(frame.to_json(orient="records"))


@pytest.fixture(scope="module")
def staging_client(registry_ws: TrainedWorkspace) -> Any:
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as mp:
        registry_ws.enter(mp)
        app = create_app(MODEL, "staging")
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_health_reports_the_loaded_version(staging_client: Any, registry_ws: TrainedWorkspace) -> None:
    response = staging_client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "model": MODEL,
        "alias": "staging",
        "version": 1,
        "run_id": registry_ws.runs[1],
        "model_uri": f"models:/{MODEL}/1",
        "loader": "skops+numpy",
    }


def test_predict_matches_the_registered_model(staging_client: Any, records: list[dict[str, Any]]) -> None:
    import pandas as pd

    response = staging_client.post("/predict", json={"records": records})
    assert response.status_code == 200
    body = response.json()
    assert (body["model"], body["alias"], body["version"]) == (MODEL, "staging", 1)
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(pd.DataFrame(records)[list(data.FEATURES)])
    assert body["predictions"] == list(expected)
    assert set(body["predictions"]) <= set(data.LABELS)


def test_integer_json_numbers_are_accepted_for_double_columns(staging_client: Any, records: list[dict[str, Any]]) -> None:
    # The signature says double; MLflow itself refuses int64 columns, so the server must convert.
    record = {**records[0], "tenure_months": 12, "support_calls_90d": 1, "late_payments_12m": 0}
    response = staging_client.post("/predict", json={"records": [record]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0] in data.LABELS


def _record(records: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    record = {**records[0], **changes}
    return {key: value for key, value in record.items() if value is not _DROP}


_DROP = object()

# (name, body builder, expected status, text that must appear in the error)
BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("not json", lambda r: b"{records: nope", 400, "not valid JSON"),
    ("empty object", lambda r: {}, 422, "records: required field is missing"),
    ("empty list", lambda r: {"records": []}, 422, "records: List should have at least 1 item"),
    ("records not a list", lambda r: {"records": r[0]}, 422, "records: Input should be a valid list"),
    ("body is a list", lambda r: [r[0]], 422, "body: Input should be a valid dictionary"),
    ("missing field", lambda r: {"records": [_record(r, region=_DROP)]}, 422, "records[0].region: required field is missing"),
    ("extra field", lambda r: {"records": [_record(r, favourite_colour="red")]}, 422, "records[0].favourite_colour: unknown field"),
    ("number as string", lambda r: {"records": [_record(r, tenure_months="12")]}, 422, "records[0].tenure_months: Input should be a valid number"),
    ("null number", lambda r: {"records": [r[0], _record(r, monthly_charges=None)]}, 422, "records[1].monthly_charges"),
    ("boolean number", lambda r: {"records": [_record(r, support_calls_90d=True)]}, 422, "records[0].support_calls_90d"),
    ("category as number", lambda r: {"records": [_record(r, contract=2)]}, 422, "records[0].contract"),
    ("unknown category", lambda r: {"records": [_record(r, region="mars")]}, 422, "records[0].region: Input should be 'north', 'south', 'east' or 'west'"),
    ("extra top-level key", lambda r: {"records": r, "debug": True}, 422, "debug: unknown field"),
    # Finite but huge numbers overflow inside the scaler: refused by the bounds, never a 500.
    ("huge finite number", lambda r: {"records": [_record(r, late_payments_12m=1.5e308)]}, 422,
     "records[0].late_payments_12m: Input should be less than or equal to 1000000000000"),
    ("huge negative number", lambda r: {"records": [_record(r, monthly_charges=-1e300)]}, 422,
     "records[0].monthly_charges: Input should be greater than or equal to"),
    ("one bad record in a batch of 1000", lambda r: {"records": [r[0]] * 999 + [_record(r, data_usage_gb=1e308)]},
     422, "records[999].data_usage_gb"),
]


@pytest.mark.parametrize(("name", "build", "status", "text"), BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_bad_input_is_a_4xx_naming_the_field_and_the_server_keeps_serving(
    staging_client: Any, records: list[dict[str, Any]], name: str, build: Any, status: int, text: str
) -> None:
    body = build(records)
    if isinstance(body, bytes):
        response = staging_client.post("/predict", content=body, headers={"content-type": "application/json"})
    else:
        response = staging_client.post("/predict", json=body)

    assert response.status_code == status, response.text
    assert text in response.json()["error"] + " " + json.dumps(response.json()["problems"])
    assert staging_client.get("/health").json()["status"] == "ok"
    assert staging_client.post("/predict", json={"records": records[:1]}).status_code == 200


def test_unset_alias_refuses_to_start_with_the_command_that_sets_it() -> None:
    with pytest.raises(RegistryError) as excinfo:
        create_app(MODEL, "canary")
    assert "no alias 'canary'" in excinfo.value.problem
    assert f"python -m scripts.mlops promote --model {MODEL} --version N --alias canary" in str(excinfo.value.fix)


def test_cli_serve_with_unset_alias_exits_1_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--workspace", "serve", "serve", "--model", MODEL, "--alias", "canary", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: cannot serve churn-classifier@canary") and "Traceback" not in err
    assert "fix: point the alias at a version first: `python -m scripts.mlops promote" in err


def test_cli_serve_unknown_model_lists_known_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--workspace", "serve", "serve", "--model", "nope", "--alias", "staging", "--port", "0"]) == 1
    assert "registered models: ['churn-classifier']" in capsys.readouterr().err


def test_port_in_use_is_an_error_with_a_fix() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(MlopsError, match="cannot listen on 127.0.0.1") as excinfo:
            listening_socket("127.0.0.1", busy.getsockname()[1]).close()
    assert "--port 0" in str(excinfo.value.fix)


@pytest.mark.slow
def test_staging_and_production_side_by_side(registry_ws: TrainedWorkspace, records: list[dict[str, Any]]) -> None:
    with running_servers(MODEL, ["staging", "production"]) as servers:
        staging, production = servers["staging"], servers["production"]
        assert staging.url.startswith("http://127.0.0.1:") and production.url.startswith("http://127.0.0.1:")
        assert staging.port != production.port
        assert (staging.health()["version"], staging.health()["run_id"]) == (1, registry_ws.runs[1])
        assert (production.health()["version"], production.health()["run_id"]) == (2, registry_ws.runs[2])
        for server, version in ((staging, 1), (production, 2)):
            response = server.predict(records)
            assert response.status_code == 200 and response.json()["version"] == version
            assert len(response.json()["predictions"]) == len(records)
            assert server.predict([]).status_code == 422
            assert server.health()["status"] == "ok"
        processes = (staging.process, production.process)
    assert all(process.poll() is not None for process in processes)


@pytest.mark.slow
def test_moving_the_alias_and_restarting_serves_the_new_version(registry_ws: TrainedWorkspace) -> None:
    with pytest.raises(RuntimeError, match="body failed"):
        with running_server(MODEL, "production") as before:
            assert before.health()["version"] == 2
            raise RuntimeError("body failed")
    assert before.process.poll() is not None  # stopped although the body raised

    promotion.promote(MODEL, 1, "production", actor="test", reason="restart test")
    try:
        with running_server(MODEL, "production") as after:
            assert after.health()["version"] == 1
            assert after.health()["run_id"] == registry_ws.runs[1]
    finally:
        promotion.rollback(MODEL, "production", actor="test")
    assert after.process.poll() is not None


@pytest.mark.slow
def test_running_server_reports_startup_failure_with_the_servers_stderr() -> None:
    with pytest.raises(MlopsError) as excinfo:
        with running_server(MODEL, "canary", timeout=60):
            pytest.fail("a server without its alias must not start")
    message = str(excinfo.value)
    assert "exited with status 1" in message
    assert "no alias 'canary'" in message and f"promote --model {MODEL} --version N --alias canary" in message


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nope", 404), ("GET", "/predict", 405),
                                                        ("DELETE", "/health", 405)])
def test_every_4xx_has_the_same_error_shape(staging_client: Any, method: str, path: str, status: int) -> None:
    response = staging_client.request(method, path)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "problems"}, body
    assert path in body["error"] and body["problems"][0]["field"] == "path"


def test_numbers_at_the_bound_are_served(staging_client: Any, records: list[dict[str, Any]]) -> None:
    from scripts.mlops.app import MAX_ABS_NUMBER

    response = staging_client.post("/predict", json={"records": [_record(records, data_usage_gb=MAX_ABS_NUMBER)]})
    assert response.status_code == 200, response.text


FUZZ_EXAMPLES = 300


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_a_bounded_fuzz_of_predict_never_gets_a_5xx(registry_ws: TrainedWorkspace) -> None:
    """Schemathesis turns the server's own OpenAPI document into valid and invalid requests.

    A fixed example count and ``derandomize`` keep it bounded and repeatable; traffic goes to
    127.0.0.1 only. No 5xx, every 4xx in the one error shape, ``/health`` fine afterwards.
    """
    import httpx
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    with running_server(MODEL, "staging") as server:
        document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
        operation = schemathesis.openapi.from_dict(document)["/predict"]["POST"]
        cases = st.one_of(operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
                          operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))
        statuses: Counter[int] = Counter()
        rss_before = _rss_kib(server.process.pid)

        @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, timeout=30)
            statuses[response.status_code] += 1
            assert response.status_code < 500, f"{response.status_code} for {case.body!r}: {response.text[:500]}"
            if response.status_code >= 400:
                assert set(response.json()) == {"error", "problems"}, response.text[:500]

        fuzz()
        assert server.health()["status"] == "ok"
        growth = _rss_kib(server.process.pid) - rss_before
    print(f"\nfuzz: {sum(statuses.values())} requests, status codes {dict(sorted(statuses.items()))}, "
          f"server RSS growth {growth} KiB")
    assert sum(statuses.values()) >= FUZZ_EXAMPLES // 2
    assert statuses[200] > 0 and any(code >= 400 for code in statuses), "both valid and invalid bodies were sent"


def test_a_model_name_with_a_space_is_seen_ready(registry_ws: TrainedWorkspace) -> None:
    """Readiness comes from /health, so any model name works (a parsed banner once needed \\S+)."""
    client = mlflow.MlflowClient()
    first = client.get_model_version(MODEL, "1")
    client.create_registered_model("churn classifier")
    client.create_model_version("churn classifier", first.source, run_id=first.run_id, model_id=first.model_id)
    promotion.promote("churn classifier", 1, "staging", actor="test")
    with running_server("churn classifier", "staging") as server:
        assert server.health()["model"] == "churn classifier"
        assert server.version == 1


_ORPHANING_PARENT = """
import os, signal, sys
from scripts.mlops import server
started = server.start_server(sys.argv[1], sys.argv[2])
print(type(started.process).__name__, started.process.pid, started.port, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind runs
"""


@pytest.mark.parametrize("cold", ["0", "1"], ids=["warm", "fresh"])
def test_a_server_does_not_outlive_the_process_that_started_it(
        registry_ws: TrainedWorkspace, monkeypatch: pytest.MonkeyPatch, cold: str) -> None:
    import os
    import subprocess
    import sys
    import time

    monkeypatch.setenv("MLOPS_COLD", cold)
    done = subprocess.run([sys.executable, "-c", _ORPHANING_PARENT, MODEL, "staging"], capture_output=True,
                          text=True, timeout=180, env={**os.environ, **server_env()})
    kind, pid, _port = done.stdout.split()
    assert kind == ("Popen" if cold == "1" else "WarmProcess"), done.stderr
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            return
        time.sleep(0.1)
    os.kill(int(pid), 9)
    pytest.fail(f"the server {pid} was still running 15 s after its parent was killed")


def server_env() -> dict[str, str]:
    from scripts.mlops.server import child_tracking_env

    return child_tracking_env()


# --- The server near its floor: no MLflow in the child, skops, a verified numpy path ------------------

_CHILD = """
import json, sys
import uvicorn

def report(self, sockets=None):  # instead of serving: what the real `serve` command loaded
    app = self.config.app
    print(json.dumps({"mlflow": sorted(m for m in sys.modules if m.split(".")[0] == "mlflow")[:3],
                      "loader": app.state.served.loader, "version": app.state.served.version}))

uvicorn.Server.run = report
from scripts.mlops import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def _run_child(args: list[str], cwd: Path) -> dict[str, Any]:
    import os
    import subprocess
    import sys

    from scripts.mlops.server import child_tracking_env

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, **child_tracking_env(), "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_a_server_told_the_version_by_its_parent_never_imports_mlflow(registry_ws: TrainedWorkspace) -> None:
    from scripts.mlops.server import child_tracking_env, resolve_for_child

    resolved = resolve_for_child(MODEL, "production", child_tracking_env())
    assert resolved is not None and resolved.version == 2 and (resolved.model_dir / "MLmodel").is_file()
    told = ["--workspace", "serve", "serve", "--model", MODEL, "--alias", "production", "--port", "0",
            "--version", "2", "--run-id", resolved.run_id, "--model-dir", str(resolved.model_dir)]
    assert _run_child(told, registry_ws.root) == {"mlflow": [], "loader": "skops+numpy", "version": 2}
    # The control: a server that resolves the alias itself does import MLflow (so the check can fail).
    asked = _run_child(told[:9], registry_ws.root)
    assert asked["mlflow"] and asked["version"] == 2 and asked["loader"] == "skops+numpy"


def test_a_fast_path_that_disagrees_stops_the_server_from_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts.mlops import fastpath

    honest = fastpath.FastPipeline.predict

    def tampered(self: fastpath.FastPipeline, records: Any) -> list[Any]:
        labels = honest(self, records)
        return [{"no": "yes", "yes": "no"}[labels[0]], *labels[1:]]  # the first record's label flipped

    monkeypatch.setattr(fastpath.FastPipeline, "predict", tampered)
    with pytest.raises(fastpath.FastPathMismatch, match="disagrees with the pipeline itself on 1 of 2400 rows"):
        create_app(MODEL, "staging")
    assert cli.main(["--workspace", "serve", "serve", "--model", MODEL, "--alias", "staging", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the numpy path of the logistic regression pipeline disagrees") and "Traceback" not in err
    assert "--no-fast-path" in err
    # Without the fast path, the same model is served by the pipeline's own predict.
    from fastapi.testclient import TestClient

    from scripts.mlops.app import load_served

    served = load_served(MODEL, "staging", fast=False)
    with TestClient(create_app(MODEL, "staging", served=served)) as client:
        assert client.get("/health").json()["loader"] == "skops+sklearn"


def _save(model: Any, folder: Path, flavor: str, frame: Any) -> Path:
    from mlflow.models import infer_signature

    from scripts.mlops.train import pip_requirements

    signature = infer_signature(frame, ["no"] * len(frame))
    # Pinned requirements, as the toolkit logs them: without, MLflow infers them in a subprocess
    # that loads the model again (2 CPU-s per model; what is served does not depend on them).
    requirements = pip_requirements()
    if flavor == "sklearn":
        mlflow.sklearn.save_model(model, folder, signature=signature, serialization_format="skops",
                                  pip_requirements=requirements)  # fmt: skip
    else:
        mlflow.pyfunc.save_model(folder, python_model=model, signature=signature, pip_requirements=requirements)
    return folder


class _EchoFirstLabel(mlflow.pyfunc.PythonModel):
    """A pyfunc model of no sklearn flavor: 'yes' for students, else 'no'."""

    def predict(self, context: Any, model_input: Any, params: Any = None) -> list[str]:
        return ["yes" if segment == "student" else "no" for segment in model_input["segment"]]


@pytest.mark.filterwarnings("ignore::UserWarning")  # MLflow's advice on type hints and input examples
def test_unrecognised_pipelines_and_other_flavors_fall_back(
    tmp_path: Path, datasets: dict[str, Path], records: list[dict[str, Any]]
) -> None:
    import pandas as pd
    from fastapi.testclient import TestClient
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import Pipeline

    from scripts.mlops.app import Resolved, load_served
    from scripts.mlops.train import TrainConfig, build_pipeline

    frame = data.load(datasets["v1"])
    features = frame[list(data.FEATURES)]
    ridge = Pipeline([("preprocess", build_pipeline(TrainConfig()).steps[0][1]), ("classifier", RidgeClassifier())])
    ridge.fit(features, frame[data.LABEL])
    cases = [
        (_save(ridge, tmp_path / "ridge", "sklearn", features.head(5)), "skops+sklearn", ridge.predict),
        (_save(_EchoFirstLabel(), tmp_path / "pyfunc", "pyfunc", features.head(5)), "mlflow.pyfunc",
         lambda f: _EchoFirstLabel().predict(None, f)),
    ]
    for folder, loader, expected in cases:
        served = load_served(MODEL, "staging", resolved=Resolved(7, "run", folder))
        assert served.loader == loader
        with TestClient(create_app(MODEL, "staging", served=served)) as client:
            assert client.get("/health").json()["loader"] == loader
            response = client.post("/predict", json={"records": records})
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == list(expected(pd.DataFrame(records)))


def test_pickle_deserialization_off_refuses_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(RegistryError, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false"):
        create_app(MODEL, "staging")


@pytest.fixture(scope="module")
def trees_version(registry_ws: TrainedWorkspace, datasets: dict[str, Path]) -> int:
    """Version 3: a gradient-boosting pipeline, @trees."""
    from scripts.mlops.train import TrainConfig, train_and_log

    with pytest.MonkeyPatch.context() as mp:
        registry_ws.enter(mp)
        result = train_and_log(datasets["v1"], datasets["eval"], TrainConfig(model="hgb"), register=MODEL)
        promotion.promote(MODEL, int(result.version or 0), "trees", actor="test")
    return int(result.version or 0)


@pytest.mark.slow
@pytest.mark.parametrize("alias", ["production", "trees"])
def test_http_predictions_equal_pyfunc_on_the_whole_frozen_eval_set(
    alias: str, trees_version: int, datasets: dict[str, Path]
) -> None:
    import httpx

    frame = data.features(data.load(datasets["eval"]))
    eval_records = json.loads(frame.to_json(orient="records"))
    with running_server(MODEL, alias) as server:
        health = server.health()
        expected = mlflow.pyfunc.load_model(health["model_uri"]).predict(frame)
        assert health["loader"] == "skops+numpy"
        served: list[Any] = []
        with httpx.Client(base_url=server.url, timeout=30) as client:
            sizes = [1] * 20 + [64] * ((len(eval_records) - 20) // 64 + 1)  # single records, then batches
            start = 0
            for size in sizes:
                chunk = eval_records[start : start + size]
                if not chunk:
                    break
                response = client.post("/predict", json={"records": chunk})
                assert response.status_code == 200, response.text
                served.extend(response.json()["predictions"])
                start += size
            whole = client.post("/predict", json={"records": eval_records})  # above the trees' fast-path size
            assert whole.status_code == 200 and whole.json()["predictions"] == list(expected)
    assert served == list(expected) and len(served) == 2400
