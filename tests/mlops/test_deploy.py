"""Lab 04's glue around the offline runner: workflow variants, their checks, candidates and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.mlops import baseline_refresh, ci_local, deploy
from scripts.mlops.errors import MlopsError
from scripts.mlops.workspace import Workspace

SHIPPED = """
permissions: {}

concurrency:
  group: deploy-gate-churn-classifier
  cancel-in-progress: false
"""


def _document(text: str, tmp_path: Path) -> dict:
    path = tmp_path / "wf.yml"
    path.write_text(text)
    return ci_local.load_workflow(path)


def test_the_shipped_blocks_rebuild_the_shipped_workflow(tmp_path: Path) -> None:
    stripped = _document(deploy.workflow_without_hardening(), tmp_path)
    assert "permissions" not in stripped and "concurrency" not in stripped
    assert stripped["jobs"]["gate"]["permissions"] == {"contents": "read"}  # job-level blocks stay
    assert _document(deploy.workflow_with(SHIPPED), tmp_path) == ci_local.load_workflow(deploy.WORKFLOW)


def test_the_promote_condition_is_replaced_and_nothing_else(tmp_path: Path) -> None:
    text = deploy.workflow_with(SHIPPED, "always()")
    document = _document(text, tmp_path)
    promote = next(step for step in document["jobs"]["release"]["steps"] if step.get("id") == "promote")
    assert promote["if"] == "always()"
    original = ci_local.load_workflow(deploy.WORKFLOW)
    promote.pop("if")
    next(step for step in original["jobs"]["release"]["steps"] if step.get("id") == "promote").pop("if")
    assert document == original


@pytest.mark.parametrize(("hardening", "promote_if", "message"), [
    ("jobs:\n  evil:\n    runs-on: x\n", None, r"may only set top-level \['permissions', 'concurrency'\]"),
    ("permissions: {}\nrm -rf /\n", None, "may only set"),
    (42, None, "must be YAML text"),
    (SHIPPED, "a\nb", "must be one line"),
    (SHIPPED, "   ", "must be one line"),
])
def test_malformed_variants_are_refused_with_what_to_write(hardening: object, promote_if: str | None,
                                                           message: str) -> None:
    with pytest.raises(MlopsError, match=message):
        deploy.workflow_with(hardening, promote_if)  # type: ignore[arg-type]


def test_lint_is_clean_on_the_shipped_workflow_and_names_what_is_wrong(tmp_path: Path) -> None:
    assert deploy.lint(deploy.WORKFLOW) == []
    loose = tmp_path / "loose.yml"
    loose.write_text(deploy.workflow_with("permissions: write-all\n"))
    rules = {(finding.tool, finding.rule) for finding in deploy.lint(loose)}
    assert rules >= {("zizmor", "excessive-permissions"), ("zizmor", "concurrency-limits")}, rules
    typo = tmp_path / "typo.yml"
    typo.write_text(deploy.workflow_with(SHIPPED, "needs.gaet.result == 'success'"))
    assert [(f.tool, f.rule) for f in deploy.lint(typo)] == [("actionlint", "expression")]
    broken = tmp_path / "broken.yml"
    broken.write_text(deploy.workflow_with(SHIPPED).replace("run: python -m scripts.mlops ci compare",
                                                            "run: echo skip || python -m scripts.mlops ci compare"))
    assert [f.tool for f in deploy.lint(broken)][:1] == ["runner"]  # the offline runner refuses it first


@pytest.mark.parametrize(("expression", "table"), [
    ("needs.gate.result == 'success'", [True, False, False, False]),
    ("success()", [True, True, True, True]),  # this job's own steps: the gate's verdict is not in it
    ("always()", [True, True, True, True]),
    ("needs.gate.result != 'failure'", [True, False, True, True]),
    ("${{ needs.gate.result == 'success' }}", [True, False, False, False]),
])
def test_promote_truth_table(expression: str, table: list[bool]) -> None:
    assert deploy.promote_truth_table(expression) == table


def test_promote_truth_table_refuses_what_the_runner_cannot_read() -> None:
    with pytest.raises(MlopsError, match=r"contains\(\)"):
        deploy.promote_truth_table("contains(needs.gate.result, 'succ')")


def test_stale_baseline_changes_only_the_hash(tmp_path: Path) -> None:
    stale = json.loads(deploy.stale_baseline(baseline_refresh.BASELINE_PATH, tmp_path / "s.json").read_text())
    original = json.loads(baseline_refresh.BASELINE_PATH.read_text())
    assert stale["eval_set_hash"] != original["eval_set_hash"]
    stale.pop("eval_set_hash"), original.pop("eval_set_hash")
    assert stale == original


def test_a_malformed_candidate_is_refused_and_not_left_behind(tmp_path: Path) -> None:
    ws = Workspace("t", tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    path = deploy.write_candidate(ws, {"model": "churn-classifier", "version": 2, "semver": "1.1.0"}, "ok")
    assert json.loads(path.read_text())["semver"] == "1.1.0"
    for bad, message in [({"model": "other", "version": 2, "semver": "v1.0.0"}, "this workflow gates"),
                         ({"model": "churn-classifier", "version": 2, "semver": "v1.0.0", "force": True}, "unknown keys"),
                         ({"model": "churn-classifier", "version": "2", "semver": "v1"}, "not a model version"),
                         (["churn-classifier", 2], "must be a dict")]:
        with pytest.raises(MlopsError, match=message):
            deploy.write_candidate(ws, bad, "bad")  # type: ignore[arg-type]
        assert not (tmp_path / "deploy" / "bad.json").exists()


def test_the_manifest_records_each_run(tmp_path: Path) -> None:
    def run(name: str, version: int, conclusion: str, failure: str | None, released: list[str]) -> deploy.GateRun:
        steps = [{"job": "gate", "step": failure or "5. compare", "id": None,
                  "outcome": "failure" if failure else "success", "exit code": 2 if failure else 0, "output": ""}]
        return deploy.GateRun(name, conclusion, 2 if failure else 0, steps, "", "",
                              [{"semver": s} for s in released], "sha256:" + "a" * 64,
                              {"model": "churn-classifier", "version": version, "semver": "v1.1.0"}, tmp_path)

    document = deploy.write_manifest(tmp_path / "manifest.json",
                                     {"clean": run("clean", 2, "success", None, ["v1.1.0"]),
                                      "regressed": run("regressed", 3, "failure", "5. compare", [])},
                                     {"clean": "r" * 32, "regressed": "s" * 32})
    assert json.loads((tmp_path / "manifest.json").read_text()) == document
    assert document["runs"]["clean"]["released"] == ["v1.1.0"] and document["runs"]["clean"]["first_failure"] is None
    assert document["runs"]["regressed"]["first_failure"] == "5. compare"
    assert document["runs"]["regressed"]["mlflow_run_id"] == "s" * 32
    assert {entry["eval_baseline_sha256"] for entry in document["runs"].values()} == {"sha256:" + "a" * 64}
