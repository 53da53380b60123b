"""The workflow's step commands on their own: candidate file, eval hash, comparison, comment."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from scripts.mlops import ci_local, cli, release
from scripts.mlops.errors import MlopsError

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "eval_baseline.json"


@pytest.mark.parametrize(("document", "message"), [
    ({"model": "churn-classifier", "version": 2}, "must name model, version and semver"),
    ({"model": "churn-classifier", "version": 2, "semver": "v1.0", }, "not a semantic version"),
    ({"model": "churn-classifier", "version": "2", "semver": "v1.0.0"}, "not a model version number"),
    ({"model": "churn-classifier", "version": 2, "semver": "v1.0.0", "force": True}, r"unknown keys \['force'\]"),
    ({"model": "other", "version": 2, "semver": "v1.0.0"}, "but this workflow gates 'churn-classifier'"),
    ({"model": "x\ny=1", "version": 2, "semver": "v1.0.0"}, "not a registered-model name"),
])
def test_the_candidate_file_is_read_strictly(tmp_path: Path, document: dict[str, Any], message: str) -> None:
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(document))
    with pytest.raises(MlopsError, match=message):
        release.read_candidate(path, "churn-classifier")


def test_the_committed_candidate_file_is_valid() -> None:
    assert release.read_candidate(REPO / "deploy" / "candidate.json", "churn-classifier")["semver"].startswith("v")


def test_verify_eval_hash(tmp_path: Path, datasets: dict[str, Path], capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    argv = ["ci", "verify-eval-hash", "--baseline", str(BASELINE), "--data"]
    assert cli.main([*argv, str(datasets["eval"])]) == 0
    assert "matches" in capsys.readouterr().out
    assert cli.main([*argv, str(datasets["v2"])]) == 1
    err = capsys.readouterr().err
    assert "would be meaningless" in err and "its own pull request" in err
    assert "Stage 2 failed" in summary.read_text()


def test_compare_writes_a_multiline_comment_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    baseline = json.loads(BASELINE.read_text())
    worse = json.loads(BASELINE.read_text())
    worse["buckets"]["student"]["accuracy"] -= 0.05
    (tmp_path / "cand.json").write_text(json.dumps(worse))
    assert cli.main(["ci", "compare", "--candidate", str(tmp_path / "cand.json"), "--baseline", str(BASELINE)]) == 2
    outputs = ci_local.parse_key_values(output.read_text())
    assert outputs["verdict"] == "regression"
    rows = [line for line in outputs["comment"].splitlines() if line.startswith("| student")]
    assert len(rows) == 1 and baseline["buckets"]["student"]["n"] == 432
    capsys.readouterr()


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, dict(self.headers), body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def github_api() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_comment_posts_to_the_pull_request_through_the_api(github_api: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    monkeypatch.delenv("MLOPS_CI_OFFLINE", raising=False)
    for key, value in {"GITHUB_EVENT_PATH": str(event), "GH_TOKEN": "t0ken", "GITHUB_REPOSITORY": "o/r",
                       "GITHUB_API_URL": github_api, "BODY": "### hello"}.items():
        monkeypatch.setenv(key, value)
    _Recorder.received.clear()
    assert cli.main(["ci", "comment", "--body-env", "BODY"]) == 0
    [(path, headers, body)] = _Recorder.received
    assert path == "/repos/o/r/issues/7/comments" and body == {"body": "### hello"}
    assert headers["Authorization"] == "Bearer t0ken"
    assert "commented on pull request #7" in capsys.readouterr().out


def test_comment_outside_a_workflow_is_refused(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("MLOPS_CI_OFFLINE", "GITHUB_EVENT_PATH", "GH_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    assert cli.main(["ci", "comment", "--body-env", "BODY"]) == 1
    assert "not in a pull-request workflow run" in capsys.readouterr().err
