"""Release bundles and their audit: a good bundle is accepted; every deceptive one is rejected
for exactly the reasons the catalogue names; the command line's exit codes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.mlops import baseline_refresh, bundle, cli, registry
from scripts.mlops.audit import QUESTIONS, audit
from scripts.mlops.audit.catalogue import CATALOGUE, BundleContext, Deception
from scripts.mlops.errors import MlopsError
from scripts.mlops.workspace import open_workspace

MODEL = "churn-classifier"
NAME = "audit"


@dataclass
class Registry:
    root: Path
    ctx: BundleContext
    good: Path  # a bundle of the production version, cut once


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, datasets: dict[str, Path]) -> Registry:
    """Production v1 (logreg, churn_v1), v2 (logreg, churn_v2), v3 (hgb, refused by the gate)."""
    from scripts.mlops.train import TrainConfig, train_and_log

    root = tmp_path_factory.mktemp("audit")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLOPS_WORKSPACE_ROOT", raising=False)
        open_workspace(NAME, root=root)
        for path, kind in ((datasets["v1"], "logreg"), (datasets["v2"], "logreg"), (datasets["v1"], "hgb")):
            train_and_log(path, datasets["eval"], TrainConfig(model=kind, seed=42), register=MODEL)
        registry.client().set_model_version_tag(MODEL, "3", "gate.verdict", "fail")
        registry.set_alias(MODEL, "production", 1)
        good = bundle.cut(MODEL, 1, root / "good", baseline_path=baseline_refresh.BASELINE_PATH)
    return Registry(root, BundleContext(MODEL, promoted=1, other=2, gate_failed=3), good)


@pytest.fixture
def entered(released: Registry, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_WORKSPACE_ROOT", str(released.root))
    open_workspace(NAME, fresh=False, root=released.root)
    registry.set_alias(MODEL, "production", 1)
    yield released
    registry.set_alias(MODEL, "production", 1)


def test_a_good_bundle_is_accepted_on_every_question(entered: Registry) -> None:
    report = audit(entered.good)
    assert report.accepted, report.markdown()
    assert [finding.name for finding in report.findings] == list(QUESTIONS)
    files = sorted(bundle.bundle_files(entered.good))
    assert {"params.json", "metrics.json", "evaluation.json", "gate.json", "lock.json"} <= set(files)
    assert any(name.startswith("model/") and name.endswith("MLmodel") for name in files)


@pytest.mark.slow
@pytest.mark.parametrize("case", CATALOGUE, ids=[case.name for case in CATALOGUE])
def test_each_deception_is_rejected_for_its_reasons(entered: Registry, tmp_path: Path, case: Deception) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(entered.good, folder)
    case.build(folder, entered.ctx)
    report = audit(folder)
    assert not report.accepted
    assert report.failed_names() == case.expected_failures, report.markdown()
    for finding in report.findings:
        if not finding.passed:
            assert finding.reason and finding.repair, finding  # every rejection says why and what to do


def test_editing_a_number_is_caught_and_regenerating_repairs(entered: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(entered.good, folder)
    next(case for case in CATALOGUE if case.name == "number_edited_to_look_right").build(folder, entered.ctx)
    finding = next(f for f in audit(folder).findings if f.name == "metrics_describe_model")
    assert not finding.passed and "re-evaluating the bundled model" in finding.reason
    assert "regenerate" in finding.repair
    repaired = bundle.cut(MODEL, 1, tmp_path / "recut", baseline_path=baseline_refresh.BASELINE_PATH)
    assert audit(repaired).accepted


def test_missing_evidence_rejects_and_a_non_bundle_is_unusable(entered: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(entered.good, folder)
    (folder / "lock.json").unlink()
    report = audit(folder)
    lock = next(f for f in report.findings if f.name == "lock_supports_artifact")
    assert not report.accepted and lock.reason.startswith("missing evidence: the bundle has no lock.json")
    with pytest.raises(MlopsError, match="has no manifest.json"):
        audit(tmp_path)


def test_cut_refuses_a_version_that_is_not_promoted_and_an_existing_folder(entered: Registry, tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match="points at version 1, not 2"):
        bundle.cut(MODEL, 2, tmp_path / "b", baseline_path=baseline_refresh.BASELINE_PATH)
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))
    with pytest.raises(MlopsError, match="already exists"):
        bundle.cut(MODEL, 1, entered.good, baseline_path=baseline_refresh.BASELINE_PATH)


def test_command_line_exit_codes(entered: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--workspace", NAME, "audit", str(entered.good), "--report", str(tmp_path / "r.md")]) == 0
    assert "Release audit: ACCEPT" in (tmp_path / "r.md").read_text()
    folder = tmp_path / "bundle"
    shutil.copytree(entered.good, folder)
    (folder / "notes.ipynb").write_text("{}")
    assert cli.main(["--workspace", NAME, "audit", str(folder)]) == 2
    out = capsys.readouterr().out
    assert "Release audit: REJECT" in out and "| manifest_lists_files |" in out
    assert cli.main(["--workspace", NAME, "audit", str(tmp_path / "nope")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_a_run_that_never_recorded_its_code_revision_cannot_be_defended(entered: Registry) -> None:
    from scripts.mlops.train import CODE_TAG

    client = registry.client()
    run_id = registry.get_version(MODEL, 1).run_id
    code = client.get_run(run_id).data.tags[CODE_TAG]
    client.delete_tag(run_id, CODE_TAG)
    try:
        lock = next(f for f in audit(entered.good).findings if f.name == "lock_supports_artifact")
    finally:
        client.set_tag(run_id, CODE_TAG, code)
    assert not lock.passed and "never recorded its code revision" in lock.reason
    assert lock.repair.startswith("re-run the declared pipeline")


def _findings(report: object) -> list[tuple[str, bool, str]]:
    return [(f.name, f.passed, f.reason) for f in report.findings]  # type: ignore[attr-defined]


def test_the_parallel_re_evaluation_answers_exactly_as_the_in_process_one(entered: Registry, tmp_path: Path) -> None:
    from scripts.mlops.audit.reeval import Pending

    edited = tmp_path / "edited"
    shutil.copytree(entered.good, edited)
    next(case for case in CATALOGUE if case.name == "number_edited_to_look_right").build(edited, entered.ctx)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(entered.good, corrupt)
    (corrupt / bundle.MODEL_DIR / "model.skops").write_bytes(b"not a zip file")
    for folder in (entered.good, edited, corrupt):
        assert _findings(audit(folder, pending=Pending.start(folder))) == _findings(audit(folder)), folder.name
    restored = next(f for f in audit(corrupt, pending=Pending.start(corrupt)).findings
                    if f.name == "metrics_describe_model")  # fmt: skip
    assert not restored.passed and restored.reason.startswith("the bundled model cannot be restored: skops cannot load")


def test_a_model_consumers_cannot_load_with_mlflow_is_not_restorable(entered: Registry, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(entered.good, folder)
    mlmodel = folder / bundle.MODEL_DIR / "MLmodel"
    text = mlmodel.read_text()
    mlmodel.write_text(text.replace("  python_function:", "  not_a_flavor:", 1))
    finding = next(f for f in audit(folder).findings if f.name == "metrics_describe_model")
    assert not finding.passed and "no python_function flavor" in finding.reason, finding


def test_a_re_evaluation_process_that_dies_fails_the_check_closed(entered: Registry) -> None:
    import subprocess
    import sys

    from scripts.mlops.audit.reeval import Pending

    dying = Pending(subprocess.Popen([sys.executable, "-c", "import sys; sys.exit('killed by the OOM killer')"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    finding = next(f for f in audit(entered.good, pending=dying).findings if f.name == "metrics_describe_model")
    assert not finding.passed
    assert finding.reason == "could not be checked: the re-evaluation process exited 1: killed by the OOM killer"
    assert dying.process.returncode == 1


def test_the_command_line_prints_its_whole_report_before_its_quick_exit(entered: Registry, tmp_path: Path) -> None:
    """``audit`` skips the interpreter's teardown (os._exit): nothing it prints or writes may be lost."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    folder = tmp_path / "bundle"
    shutil.copytree(entered.good, folder)
    (folder / "debug.log").write_text("left behind")
    for bundle_folder, code, verdict in ((entered.good, 0, "ACCEPT"), (folder, 2, "REJECT")):
        report = tmp_path / f"{verdict}.md"
        done = subprocess.run(
            [sys.executable, "-m", "scripts.mlops", "--workspace", NAME, "audit", str(bundle_folder),
             "--report", str(report)],
            cwd=repo, env={**os.environ, "MLOPS_WORKSPACE_ROOT": str(entered.root)}, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == code, done.stderr
        assert done.stdout.startswith(f"### Release audit: {verdict}")
        assert done.stdout.rstrip().endswith("|") and "| consumer_paths |" in done.stdout, done.stdout[-300:]
        assert report.read_text() == done.stdout
