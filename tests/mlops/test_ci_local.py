"""The offline runner: its expression subset and refusals, and the REAL deploy-gate workflow end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from scripts.mlops import baseline_refresh, ci_local, cli, inject, promotion, registry, release
from scripts.mlops.ci_local import Status, WorkflowError
from scripts.mlops.inject.wrappers import WrappedModel
from tests.support import Production

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "deploy-gate.yml"
MODEL = "churn-classifier"
BASE_URI = f"models:/{MODEL}/1"

# ----------------------------------------------------------------------------- expressions (no MLflow)

CONTEXTS = {"steps": {"compare": {"outputs": {"verdict": "Regression"}, "outcome": "failure"}},
            "needs": {"gate": {"result": "success", "outputs": {"comment": ""}}},
            "github": {"event": {"label": {"name": "deploy-candidate"}}}, "vars": {}, "env": {"A": "1"}}


@pytest.mark.parametrize(("expression", "value"), [
    ("steps.compare.outputs.verdict == 'regression'", True),  # strings compare case-insensitively
    ("steps.compare.outputs.verdict != 'pass'", True),
    ("steps.compare.outcome == 'failure' && needs.gate.result == 'success'", True),
    ("${{ github.event.label.name == 'deploy-candidate' }}", True),
    ("needs.gate.outputs.comment || 'default'", "default"),
    ("!(needs.gate.result == 'failure')", True),
    ("steps.missing.outputs.x == null", True),
    ("vars.UNSET", None),
    ("'it''s'", "it's"),
    ("always()", True),
    ("failure()", False),
])
def test_expression_subset(expression: str, value: Any) -> None:
    assert ci_local.evaluate(expression, CONTEXTS, Status()) == value


@pytest.mark.parametrize(("expression", "message"), [
    ("contains(github.event.label.name, 'x')", r"the function contains\(\)"),
    ("github.event.pull_request.labels.*.name", "cannot read the expression"),
    ("secrets.TOKEN", "the context 'secrets'"),
    ("steps.a.outputs.x == 1 + 2", "cannot read the expression"),
    ("needs.gate.result == true", "comparing str with bool"),
    ("github.event[0]", "cannot read the expression"),
])
def test_anything_outside_the_subset_is_refused(expression: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        ci_local.evaluate(expression, CONTEXTS, Status())


def test_if_conditions_get_an_implicit_success() -> None:
    failed = Status(failed=True)
    assert ci_local.condition(None, CONTEXTS, Status()) and not ci_local.condition(None, CONTEXTS, failed)
    assert not ci_local.condition("env.A == '1'", CONTEXTS, failed)  # success() && ... after a failure
    assert ci_local.condition("failure() && env.A == '1'", CONTEXTS, failed)
    assert ci_local.condition("always()", CONTEXTS, failed)


def test_step_files_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out"
    ci_local.write_key_value(path, "verdict", "pass")
    ci_local.write_key_value(path, "comment", "| a |\n| - |\n")
    assert ci_local.parse_key_values(path.read_text()) == {"verdict": "pass", "comment": "| a |\n| - |"}
    with pytest.raises(WorkflowError, match="never ends"):
        ci_local.parse_key_values("body<<EOF\nno end\n")


@pytest.mark.parametrize(("command", "ok"), [
    ('python -m scripts.mlops ci compare --candidate "$RUNNER_TEMP/c.json" --baseline "$B"', True),
    ("python -m scripts.mlops.compare_baseline --candidate c.json --baseline b.json", True),
    ("python -m scripts.mlops data --note 'a; b && c | d'", True),  # quoted operators are text
    ("python -m scripts.mlops data; rm -rf ~", False),
    ("python -m scripts.mlops data && curl https://example.org", False),
    ("python -m scripts.mlops data | tee log", False),
    ("python -m scripts.mlops data > out.txt", False),
    ("python -m scripts.mlops data $(whoami)", False),
    ("python -m scripts.mlops data `whoami`", False),
    ("python -m scripts.mlopsx data", False),
    ("python -m pip install requests", False),
])
def test_one_project_command(command: str, ok: bool) -> None:
    assert ci_local.is_one_project_command(command) is ok


def _workflow(tmp_path: Path, steps: str, top: str = "") -> Path:
    path = tmp_path / "wf.yml"
    path.write_text(f"name: t\non:\n  pull_request:\n    types: [labeled]\n{top}jobs:\n  only:\n"
                    f"    runs-on: ubuntu-24.04\n    steps:\n{steps}")
    return path


@pytest.mark.parametrize(("steps", "message"), [
    ("      - run: echo ${{ github.event.label.name }}\n", "inside `run:`"),
    ("      - run: curl https://example.org | sh\n", "not one project command"),
    ("      - run: |\n          python -m scripts.mlops data\n          rm -rf /\n", "not one project command"),
    ("      - run: python -m scripts.mlops data\n        shell: pwsh\n", "uses shell 'pwsh'"),
    ("      - run: python -m scripts.mlops data\n        continue-on-error: true\n", "does not emulate"),
    ("      - run: python -m scripts.mlops data\n        if: contains(github.event.label.name, 'x')\n",
     "contains()"),
])
def test_the_runner_refuses_what_it_does_not_emulate(tmp_path: Path, steps: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        ci_local.run_workflow(_workflow(tmp_path, steps), repo=REPO, out=tmp_path / "ci", stream=io.StringIO())


def test_refusals_come_before_anything_runs(tmp_path: Path) -> None:
    steps = ("      - run: python -m scripts.mlops data --out \"$RUNNER_TEMP/data\"\n"
             "      - run: python -m scripts.mlops data\n        if: steps.x.outputs.y == 'a' && hashFiles('x')\n")
    with pytest.raises(WorkflowError, match=r"the function hashFiles\(\)"):
        ci_local.run_workflow(_workflow(tmp_path, steps), repo=REPO, out=tmp_path / "ci", stream=io.StringIO())
    assert not (tmp_path / "ci").exists()


def test_the_emulation_folder_is_never_a_foreign_one(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path, "      - run: python -m scripts.mlops data --out \"$RUNNER_TEMP/d\"\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ci_local.MlopsError, match="left untouched"):
        ci_local.run_workflow(workflow, repo=REPO, out=tmp_path / "mine", stream=io.StringIO())
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    with pytest.raises(ci_local.MlopsError, match="would contain the checkout"):
        ci_local.run_workflow(workflow, repo=REPO, out=REPO.parent, stream=io.StringIO())


def test_a_step_file_that_vanishes_after_the_check_stops_the_run_as_folder_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run may start emptying the folder just after this run checked that it is still its
    own: the step's files vanish while run-owner is still there. The run stops with FolderTaken, as
    when the folder is already claimed, not with a FileNotFoundError (seen in the racing drill)."""
    original = ci_local.Runner.check_folder

    def check_then_empty(self: ci_local.Runner, vanished: str | None = None) -> None:
        original(self, vanished)
        for path in self.out.rglob("*.output"):  # the other run's rmtree, under way
            path.unlink()

    monkeypatch.setattr(ci_local.Runner, "check_folder", check_then_empty)
    workflow = _workflow(tmp_path, "      - run: python -m scripts.mlops data --out \"$RUNNER_TEMP/d\"\n")
    with pytest.raises(ci_local.FolderTaken, match=r"being emptied: .*\.output vanished"):
        ci_local.run_workflow(workflow, repo=REPO, out=tmp_path / "ci", stream=io.StringIO())


def test_other_triggers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wf.yml"
    path.write_text("on: [push]\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: python -m scripts.mlops data\n")
    with pytest.raises(WorkflowError, match="only that event"):
        ci_local.run_workflow(path, repo=REPO, out=tmp_path / "ci", stream=io.StringIO())


def test_steps_outputs_and_failure_conditions(tmp_path: Path) -> None:
    steps = (
        "      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1\n"
        "      - id: bad\n        run: python -m scripts.mlops ci verify-eval-hash --baseline \"$B\" --data \"$B\"\n"
        "      - name: after\n        run: python -m scripts.mlops ci comment --body-env NOPE\n"
        "      - name: on failure\n        if: failure() && steps.bad.outcome == 'failure'\n"
        "        env:\n          BODY: ${{ env.GREETING }} from ${{ steps.bad.outcome }}\n"
        "        run: python -m scripts.mlops ci comment --body-env BODY\n"
    )
    top = "env:\n  B: eval_baseline.json\n  GREETING: hello\n"
    out = io.StringIO()
    run = ci_local.run_workflow(_workflow(tmp_path, steps, top), repo=REPO, out=tmp_path / "ci", stream=out)
    outcomes = [(step.outcome, step.exit_code) for step in run.jobs["only"].steps]
    assert outcomes == [("success", None), ("failure", 1), ("skipped", None), ("success", 0)], out.getvalue()
    assert run.conclusion == "failure" and run.comment == "hello from failure\n"
    assert "has fingerprint" in out.getvalue()  # the command's own error is shown, as CI shows it
    assert json.loads((tmp_path / "ci" / "run.json").read_text())["conclusion"] == "failure"


# ----------------------------------------------------------------------------- the real workflow, end to end


@pytest.fixture(scope="module")
def candidates(production: Production) -> dict[str, int]:
    """Two new versions of the production model: a clean one (identity wrapper) and the Lab 03 regression."""
    from scripts.mlops.workspace import open_workspace

    open_workspace(baseline_refresh.WORKSPACE, fresh=False, root=production.root)
    clean = inject.register_wrapper(WrappedModel(), BASE_URI, register=MODEL, run_name="ci-clean")
    regressed = inject.register_slice_corruption(BASE_URI, inject.LAB_SLICE, inject.LAB_FRACTION, register=MODEL)
    return {"clean": clean, "regressed": regressed}


def _gate(prod: Production, tmp_path: Path, capsys: pytest.CaptureFixture[str], *, version: int, semver: str,
          baseline: Path | None = None, workflow: Path = WORKFLOW) -> tuple[int, dict[str, Any], Path]:
    """Run the real workflow offline on a candidate file declaring ``version`` as ``semver``."""
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps({"model": MODEL, "version": version, "semver": semver}))
    out = tmp_path / "ci"
    status = cli.main(["--workspace", baseline_refresh.WORKSPACE, "ci", "run", "--workflow", str(workflow),
                       "--repo", str(REPO), "--candidate", str(candidate), "--baseline", str(baseline or prod.baseline),
                       "--out", str(out)])
    capsys.readouterr()
    return status, json.loads((out / "run.json").read_text()), out


def _with_step_env(text: str, step_id: str, name: str, value: str) -> str:
    """The workflow ``text`` with ``name: value`` added to the ``env:`` of the step whose id is ``step_id``."""
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == f"id: {step_id}")
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    env = next(i for i in range(at + 1, len(lines)) if lines[i].startswith(indent + "env:"))
    assert all(line.startswith(indent) for line in lines[at:env]), f"step {step_id} has no env: of its own"
    return "".join([*lines[: env + 1], f"{indent}  {name}: {value}\n", *lines[env + 1 :]])


def _steps(run: dict[str, Any], job: str) -> dict[str, dict[str, Any]]:
    return {step["name"].split(" ")[0] + (step["id"] or ""): step for step in run["jobs"][job]["steps"]}


def _state(prod: Production) -> tuple[Any, ...]:
    folder = prod.root / baseline_refresh.WORKSPACE / "releases"
    files = tuple((folder / name).read_text() if (folder / name).exists() else None
                  for name in (release.TAGS_FILE, release.INDEX_FILE))
    return files, promotion.history(MODEL), registry.current_version(MODEL, "production")


@pytest.mark.slow
def test_clean_candidate_is_promoted_and_a_rerun_changes_nothing(
        prod: Production, candidates: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, run, out = _gate(prod, tmp_path, capsys, version=candidates["clean"], semver="v1.1.0")
    assert status == 0 and run["conclusion"] == "success", run
    assert registry.current_version(MODEL, "production") == candidates["clean"]
    [line] = release.index_lines(prod.root / baseline_refresh.WORKSPACE / "releases")
    assert (line["semver"], line["version"], line["source"]) == ("v1.1.0", candidates["clean"], "ci")
    assert "released v1.1.0" in (out / "pr-comment.md").read_text()
    assert "Gate passed" in (out / "gate" / "summary.md").read_text()
    assert (out / "gate" / "workspaces").is_dir()  # the steps' local workspaces stay out of the checkout

    before = _state(prod)
    status, run, out = _gate(prod, tmp_path, capsys, version=candidates["clean"], semver="v1.1.0")
    assert status == 0 and _state(prod) == before  # no second index line, no second promotion
    assert "v1.1.0 was already released" in (out / "pr-comment.md").read_text()


@pytest.mark.slow
def test_regressed_candidate_fails_stage_5_and_nothing_is_promoted(
        prod: Production, candidates: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _state(prod)
    status, run, out = _gate(prod, tmp_path, capsys, version=candidates["regressed"], semver="v1.2.0")
    assert status == 2 and run["conclusion"] == "failure"
    gate_steps = run["jobs"]["gate"]["steps"]
    assert [s["exit_code"] for s in gate_steps if s["id"] == "compare"] == [2]
    promote = next(s for s in run["jobs"]["release"]["steps"] if s["id"] == "promote")
    assert promote["outcome"] == "skipped"
    comment = (out / "pr-comment.md").read_text()
    assert comment.startswith("### Deploy gate: regression, nothing was promoted")
    table = [line for line in comment.splitlines() if line.startswith("|")]
    assert table[0].startswith("| bucket | baseline | candidate | drop |")
    assert [line.split(" | ")[0] for line in table[2:]] == [f"| {inject.LAB_SLICE}"]  # only the regressed slice
    assert _state(prod) == before  # registry alias, promotion history and release index unchanged


@pytest.mark.slow
def test_stale_eval_hash_in_the_baseline_fails_fast_at_stage_2(
        prod: Production, candidates: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = json.loads(prod.baseline.read_text())
    stale["eval_set_hash"] = "sha256:" + "0" * 64
    baseline = tmp_path / "stale_baseline.json"
    baseline.write_text(json.dumps(stale))
    before = _state(prod)
    status, run, out = _gate(prod, tmp_path, capsys, version=candidates["clean"], semver="v1.3.0", baseline=baseline)
    assert status == 1 and run["conclusion"] == "failure"
    outcomes = [(s["name"].split(" ")[0], s["outcome"], s["exit_code"]) for s in run["jobs"]["gate"]["steps"]]
    assert outcomes[4] == ("2.", "failure", 1)  # the hash check
    assert all(outcome == "skipped" for _, outcome, _ in outcomes[5:])  # nothing after it ran
    assert "Deploy gate failed before the comparison" in (out / "pr-comment.md").read_text()
    assert "Stage 2 failed" in (out / "gate" / "summary.md").read_text()
    assert _state(prod) == before


_BROKEN_REGISTRY = """
import sys
if "release" in sys.argv:  # only the stage-6 command: MLflow fails while moving the alias
    from scripts.mlops import promotion

    def promote(*args, **kwargs):
        raise promotion.RegistryError("the model registry cannot be used: injected failure (database is locked)")

    promotion.promote = promote
"""


@pytest.mark.slow
def test_an_mlflow_failure_during_promotion_rolls_the_index_back(
        prod: Production, candidates: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_BROKEN_REGISTRY)
    # The pinned workflow, with the hook on the promote step's PYTHONPATH: that step runs in a fresh
    # interpreter, which loads it (a step whose startup variables differ cannot fork from the warm
    # interpreter); the other steps fork as usual.
    workflow = tmp_path / "deploy-gate.yml"
    workflow.write_text(_with_step_env(WORKFLOW.read_text(), "promote", "PYTHONPATH", str(hook)))
    before = _state(prod)
    status, run, out = _gate(prod, tmp_path, capsys, version=candidates["clean"], semver="v1.4.0", workflow=workflow)
    assert status == 1 and run["jobs"]["gate"]["result"] == "success"
    promote = next(s for s in run["jobs"]["release"]["steps"] if s["id"] == "promote")
    assert (promote["outcome"], promote["exit_code"]) == ("failure", 1)
    comment = (out / "pr-comment.md").read_text()
    assert "release failed" in comment and "rolled back" in comment and "injected failure" in comment
    assert _state(prod) == before  # tags.json, index.jsonl, alias and promotion history as they were


@pytest.mark.slow
def test_two_gates_releasing_the_same_semver_at_once_stay_consistent(
        prod: Production, candidates: dict[str, int], tmp_path: Path) -> None:
    """Two pull requests race to release v3.0.0 (version 1 and the clean wrapper: different bytes)."""
    import threading

    from scripts.mlops.workspace import open_workspace

    ws = open_workspace(baseline_refresh.WORKSPACE, fresh=False, root=prod.root)
    variables = {"MLFLOW_TRACKING_URI": f"sqlite:///{ws.db.resolve()}",
                 "MLOPS_RELEASES_DIR": str(prod.root / baseline_refresh.WORKSPACE / "releases")}
    lines_before = len(release.index_lines(variables["MLOPS_RELEASES_DIR"]))
    runs: dict[int, ci_local.WorkflowRun] = {}

    def gate(version: int) -> None:
        candidate = tmp_path / f"candidate-{version}.json"
        candidate.write_text(json.dumps({"model": MODEL, "version": version, "semver": "v3.0.0"}))
        runs[version] = ci_local.run_workflow(
            WORKFLOW, repo=REPO, out=tmp_path / f"ci-{version}", variables=variables, stream=io.StringIO(),
            env={"CANDIDATE_FILE": str(candidate), "BASELINE_FILE": str(prod.baseline)})

    threads = [threading.Thread(target=gate, args=(version,)) for version in (1, candidates["clean"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert set(runs) == {1, candidates["clean"]}
    won = [v for v, run in runs.items() if run.conclusion == "success"]
    lost = [v for v, run in runs.items() if run.conclusion == "failure"]
    assert len(won) == 1 and len(lost) == 1, {v: run.to_dict() for v, run in runs.items()}
    promote = next(s for s in runs[lost[0]].jobs["release"].steps if s.id == "promote")
    assert promote.exit_code == 2 and "release refused" in (runs[lost[0]].comment or "")
    lines = release.index_lines(variables["MLOPS_RELEASES_DIR"])
    assert len(lines) == lines_before + 1 and lines[-1]["semver"] == "v3.0.0" and lines[-1]["version"] == won[0]
    assert registry.current_version(MODEL, "production") == won[0]


@pytest.mark.slow
def test_a_step_forked_from_the_warm_interpreter_does_what_a_fresh_one_does(
        prod: Production, candidates: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The red run, once with a fresh interpreter per step and once warm: the same steps, same everything."""
    seen = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("MLOPS_COLD", mode)
        status, run, out = _gate(prod, tmp_path, capsys, version=candidates["regressed"], semver="v1.9.0")
        steps = [{key: step[key] for key in ("name", "outcome", "exit_code", "output", "outputs", "exported")}
                 for job in run["jobs"].values() for step in job["steps"]]
        seen[mode] = (status, run["conclusion"], steps, (out / "pr-comment.md").read_text(),
                      (out / "gate" / "summary.md").read_text())
    assert seen["1"][0] == 2 and "enterprise" in seen["1"][3]  # the regression was refused, with its table
    assert seen["0"] == seen["1"]


# ----------------------------------------------------------------------------- concurrency groups


def test_a_group_held_by_one_holder_queues_the_next_and_other_groups_do_not_wait(tmp_path: Path) -> None:
    import threading
    import time

    from scripts.mlops import ci_concurrency

    said: list[str] = []
    windows: dict[str, tuple[float, float]] = {}

    def holder(name: str, group: str) -> None:
        with ci_concurrency.hold(group, tmp_path, who=f"holder {name}", say=said.append):
            start = time.monotonic()
            time.sleep(0.6)
            windows[name] = (start, time.monotonic())

    threads = [threading.Thread(target=holder, args=args) for args in (("a", "g"), ("b", "g"), ("c", "other"))]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=30)
    (_, a_end), (b_start, _), (c_start, _) = windows["a"], windows["b"], windows["c"]
    assert b_start >= a_end and c_start < a_end  # same group: one after the other; another group: at once
    assert any("'g' is held by holder a; this run is queued" in line for line in said), said
    assert any(line.startswith("concurrency: group 'g' acquired after") for line in said), said
    with ci_concurrency.hold("g", tmp_path, who="first", say=said.append):
        with pytest.raises(ci_concurrency.GroupBusy, match="held by first; with cancel-in-progress: true"):
            with ci_concurrency.hold("g", tmp_path, who="second", cancel_in_progress=True, say=said.append):
                pass
    with pytest.raises(ci_concurrency.MlopsError, match="empty name"):
        with ci_concurrency.hold(" ", tmp_path, who="x", say=said.append):
            pass


def test_the_lock_folder_is_per_checkout_and_an_unusable_one_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.mlops import ci_concurrency

    monkeypatch.delenv("MLOPS_CI_LOCKS", raising=False)
    one, other = ci_concurrency.lock_folder(tmp_path / "a" / "repo"), ci_concurrency.lock_folder(tmp_path / "b" / "repo")
    assert one != other and one.name.startswith("repo-") and one.parent == other.parent
    assert ci_concurrency.lock_folder(tmp_path / "a" / "repo") == one  # the same checkout, the same locks
    monkeypatch.setenv("MLOPS_CI_LOCKS", str(tmp_path / "locks"))
    assert ci_concurrency.lock_folder(tmp_path / "a" / "repo") == tmp_path / "locks"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ci_concurrency.MlopsError, match=r"cannot open the lock file (.|\n)* set MLOPS_CI_LOCKS"):
        with ci_concurrency.hold("g", tmp_path / "a-file" / "locks", who="x"):
            pass


def test_the_group_is_evaluated_like_any_expression() -> None:
    contexts = {"github": {"workflow": "deploy-gate", "ref": "refs/pull/7/merge"}, "vars": {"MODEL": "m"}}
    spec = {"group": "${{ github.workflow }}-${{ vars.MODEL }}-${{ github.ref }}", "cancel-in-progress": "${{ true }}"}
    assert ci_local.concurrency_of(spec, contexts) == ("deploy-gate-m-refs/pull/7/merge", True)
    assert ci_local.concurrency_of("fixed", contexts) == ("fixed", False)
    assert ci_local.concurrency_of(None, contexts) is None
    with pytest.raises(WorkflowError, match="not a boolean"):
        ci_local.concurrency_of({"group": "g", "cancel-in-progress": 1}, contexts)
    with pytest.raises(WorkflowError, match="the context 'yes'"):
        ci_local.concurrency_of({"group": "g", "cancel-in-progress": "yes please"}, contexts)


def test_a_job_asking_for_the_group_its_run_holds_is_refused(tmp_path: Path) -> None:
    top = "concurrency: same\n"
    path = _workflow(tmp_path, "      - run: python -m scripts.mlops data --out \"$RUNNER_TEMP/d\"\n", top)
    path.write_text(path.read_text().replace("    runs-on:", "    concurrency: same\n    runs-on:"))
    with pytest.raises(WorkflowError, match="already holds"):
        ci_local.run_workflow(path, repo=REPO, out=tmp_path / "ci", stream=io.StringIO())
    path.write_text(path.read_text().replace("concurrency: same\njobs", "concurrency:\n  cancel: x\njobs"))
    with pytest.raises(WorkflowError, match="does not emulate"):
        ci_local.run_workflow(path, repo=REPO, out=tmp_path / "ci", stream=io.StringIO())


def test_a_workflow_without_concurrency_takes_no_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_CI_LOCKS", str(tmp_path / "locks"))
    out = io.StringIO()
    run = ci_local.run_workflow(_workflow(tmp_path, "      - uses: actions/cache@v4\n"), repo=REPO,
                                out=tmp_path / "ci", stream=out)
    assert run.conclusion == "success" and run.queued == {} and "concurrency" not in out.getvalue()
    assert not (tmp_path / "locks").exists()
    assert json.loads((tmp_path / "ci" / "run.json").read_text())["concurrency"] == {}


def _overlapping(prod: Production, tmp_path: Path, workflows: dict[str, Path], version: int,
                 ) -> dict[str, ci_local.WorkflowRun]:
    """Start one real gate run per workflow at (almost) the same time, each in its own folder."""
    import threading
    import time

    from scripts.mlops.workspace import open_workspace

    ws = open_workspace(baseline_refresh.WORKSPACE, fresh=False, root=prod.root)
    variables = {"MLFLOW_TRACKING_URI": f"sqlite:///{ws.db.resolve()}",
                 "MLOPS_RELEASES_DIR": str(prod.root / baseline_refresh.WORKSPACE / "releases")}
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps({"model": MODEL, "version": version, "semver": "v1.1.0"}))
    runs: dict[str, ci_local.WorkflowRun] = {}

    def gate(name: str) -> None:
        runs[name] = ci_local.run_workflow(
            workflows[name], repo=REPO, out=tmp_path / f"ci-{name}", variables=variables, stream=io.StringIO(),
            env={"CANDIDATE_FILE": str(candidate), "BASELINE_FILE": str(prod.baseline)})

    threads = [threading.Thread(target=gate, args=(name,)) for name in workflows]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join(timeout=600)
    assert set(runs) == set(workflows)
    return runs


def _window(run: ci_local.WorkflowRun) -> tuple[float, float]:
    """From the first step's start to the last step's end (wall clock)."""
    ran = [step for job in run.jobs.values() for step in job.steps if step.started_at]
    return min(s.started_at for s in ran), max(s.started_at + s.seconds for s in ran)


@pytest.mark.slow
def test_two_runs_of_the_real_workflow_in_one_group_are_serialised(
        prod: Production, candidates: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_CI_LOCKS", str(tmp_path / "locks"))
    runs = _overlapping(prod, tmp_path, {"first": WORKFLOW, "second": WORKFLOW}, candidates["clean"])
    assert all(run.conclusion == "success" for run in runs.values()), {k: r.to_dict() for k, r in runs.items()}
    (first_start, first_end), (second_start, _) = _window(runs["first"]), _window(runs["second"])
    assert first_end <= second_start, (first_end, second_start)  # no overlap: the second waited
    group = "deploy-gate-churn-classifier"
    # The second asked 0.2 s after the first, so it queued for about the rest of the first's run
    # (however fast the machine makes that run), and the first did not queue.
    waited = (first_end - first_start) - 0.3
    assert runs["second"].queued[group] > max(waited, 0.05) and runs["first"].queued[group] < 0.5, (
        runs["second"].queued, runs["first"].queued, first_end - first_start)
    recorded = json.loads((tmp_path / "ci-second" / "run.json").read_text())["concurrency"][group]["queued_seconds"]
    assert recorded == pytest.approx(runs["second"].queued[group], abs=0.01)


@pytest.mark.slow
def test_runs_in_different_groups_run_side_by_side(
        prod: Production, candidates: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_CI_LOCKS", str(tmp_path / "locks"))
    workflows = {}
    for name in ("a", "b"):
        workflows[name] = tmp_path / f"{name}.yml"
        workflows[name].write_text(WORKFLOW.read_text().replace("group: deploy-gate-churn-classifier",
                                                                f"group: deploy-gate-{name}"))
    runs = _overlapping(prod, tmp_path, workflows, candidates["clean"])
    assert all(run.conclusion == "success" for run in runs.values()), {k: r.to_dict() for k, r in runs.items()}
    assert runs["a"].queued == {"deploy-gate-a": pytest.approx(0, abs=0.5)}
    assert runs["b"].queued == {"deploy-gate-b": pytest.approx(0, abs=0.5)}
    (a_start, a_end), (b_start, b_end) = _window(runs["a"]), _window(runs["b"])
    assert b_start < a_end and a_start < b_end  # the windows overlap


@pytest.mark.slow
def test_a_killed_run_frees_its_group_at_once(
        prod: Production, candidates: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL a `ci run` while it holds the group: the kernel drops its lock, the next run does not queue."""
    import os
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.setenv("MLOPS_CI_LOCKS", str(tmp_path / "locks"))
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps({"model": MODEL, "version": candidates["clean"], "semver": "v1.1.0"}))
    log = tmp_path / "killed.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.mlops", "--workspace", baseline_refresh.WORKSPACE, "ci", "run",
             "--workflow", str(WORKFLOW), "--repo", str(REPO), "--candidate", str(candidate),
             "--baseline", str(prod.baseline), "--out", str(tmp_path / "ci-killed")],
            cwd=prod.root, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "$ python -m scripts.mlops data" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        assert "acquired (no other run held it)" in log.read_text()
        os.killpg(process.pid, signal.SIGKILL)  # mid-step, no chance to clean up
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    runs = _overlapping(prod, tmp_path, {"next": WORKFLOW}, candidates["clean"])
    assert runs["next"].conclusion == "success"
    assert runs["next"].queued["deploy-gate-churn-classifier"] < 0.5
