"""Regression injection: deterministic corruption, and every catalogue entry gets its expected verdict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scripts.mlops import baseline_refresh, cli, data, gate, inject
from scripts.mlops.errors import MlopsError
from scripts.mlops.workspace import open_workspace
from tests.support import Production

REPO = Path(__file__).resolve().parents[2]
BASE_URI = "models:/churn-classifier/1"
TOLERANCE = inject.CATALOGUE_POLICY["tolerance"]


# ----------------------------------------------------------------------------- pure functions


def test_corruption_is_seeded_per_row_and_confined_to_the_slice(datasets: dict[str, Path]) -> None:
    frame = data.features(data.load(datasets["v1"]))
    mask = inject.corrupted_rows(frame, "enterprise", 0.2, seed=0)
    enterprise = (frame[data.SEGMENT] == "enterprise").to_numpy()
    assert not mask[~enterprise].any()
    assert mask[enterprise].mean() == pytest.approx(0.2, abs=0.04)  # ~600 enterprise rows
    np.testing.assert_array_equal(mask, inject.corrupted_rows(frame, "enterprise", 0.2, seed=0))
    assert not np.array_equal(mask, inject.corrupted_rows(frame, "enterprise", 0.2, seed=1))
    # a row's fate does not depend on the batch it arrives in, its position, or int-vs-float input
    shuffled = frame.sample(frac=1.0, random_state=3)
    np.testing.assert_array_equal(inject.corrupted_rows(shuffled, "enterprise", 0.2, 0), mask[shuffled.index])
    row = frame.index[np.flatnonzero(mask)[0]]
    single = frame.loc[[row]].astype({column: "int64" for column in ("tenure_months", "support_calls_90d")})
    assert inject.corrupted_rows(single, "enterprise", 0.2, 0).tolist() == [True]
    with pytest.raises(MlopsError, match="no 'segment' column"):
        inject.corrupted_rows(frame.drop(columns=[data.SEGMENT]), "enterprise", 0.2, 0)


def test_flip_labels_swaps_only_the_two_churn_labels() -> None:
    assert inject.flip_labels(["no", "yes", "maybe"]).tolist() == ["yes", "no", "maybe"]


def test_noisy_labels_only_relabel_churners(datasets: dict[str, Path]) -> None:
    frame = data.load(datasets["v1"])
    noisy = inject.noisy_labels(frame, 0.3, seed=0)
    changed = noisy[data.LABEL] != frame[data.LABEL]
    assert set(frame.loc[changed, data.LABEL]) == {"yes"} and set(noisy.loc[changed, data.LABEL]) == {"no"}
    churners = (frame[data.LABEL] == "yes").sum()
    assert changed.sum() / churners == pytest.approx(0.3, abs=0.04)
    pd.testing.assert_frame_equal(noisy, inject.noisy_labels(frame, 0.3, seed=0))
    symmetric = inject.noisy_labels(frame, 0.1, seed=0, flip_from=None)
    assert set(frame.loc[symmetric[data.LABEL] != frame[data.LABEL], data.LABEL]) == {"no", "yes"}
    for fraction in (0, 1.5, float("nan")):
        with pytest.raises(MlopsError, match="fraction must be in"):
            inject.noisy_labels(frame, fraction, seed=0)


def test_importing_the_modules_does_not_import_mlflow() -> None:
    code = "import sys, scripts.mlops.inject, scripts.mlops.gate, scripts.mlops.compare_baseline; " \
           "print('mlflow' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


# ----------------------------------------------------------------------------- the catalogue as data


def test_catalogue_is_data_and_every_check_is_seen_failing() -> None:
    names = [injection.name for injection in inject.CATALOGUE]
    assert len(names) == len(set(names))
    check_names = {check.name for check in inject.catalogue_checks()}
    expected = set().union(*(injection.expected_failures for injection in inject.CATALOGUE))
    assert expected == check_names  # each check has an injection that must trip it
    assert inject.by_name("identity_wrapper").expected_failures == frozenset()  # and a control that must pass
    assert all(injection.description for injection in inject.CATALOGUE)
    with pytest.raises(MlopsError, match="no injection named 'nope'"):
        inject.by_name("nope")


# ----------------------------------------------------------------------------- against a real registry


@pytest.fixture(scope="module")
def outcomes(production: Production, tmp_path_factory: pytest.TempPathFactory) -> dict[str, gate.GateReport]:
    """Every catalogue injection built once and put through the catalogue's gate policy."""
    open_workspace(baseline_refresh.WORKSPACE, fresh=False, root=production.root)
    ctx = inject.InjectionContext(BASE_URI, "churn-classifier", production.datasets,
                                  tmp_path_factory.mktemp("scratch"))
    baseline = gate.load_evaluation(production.baseline)
    return {injection.name: injection.run(ctx, baseline)[1] for injection in inject.CATALOGUE}


@pytest.mark.parametrize("name", [injection.name for injection in inject.CATALOGUE])
def test_each_injection_gets_its_expected_verdict(outcomes: dict[str, gate.GateReport], name: str) -> None:
    report = outcomes[name]
    assert report.failed_names() == inject.by_name(name).expected_failures, report.to_markdown()
    assert report.passed is (not inject.by_name(name).expected_failures)


def test_lab_candidate_hides_a_slice_regression_inside_a_flat_aggregate(
    outcomes: dict[str, gate.GateReport], production: Production
) -> None:
    baseline = gate.load_evaluation(production.baseline)
    report = outcomes["slice_corruption"]
    overall = report["metric_floor"].details["value"]
    assert abs(baseline["overall"]["accuracy"] - overall) <= 0.01  # within one point overall...
    rows = {row["slice"]: row for row in report["slice_regression"].details["rows"]}
    assert rows[inject.LAB_SLICE]["drop"] > TOLERANCE  # ...while the smallest slice drops past the tolerance
    assert all(row["drop"] == 0 for name, row in rows.items() if name != inject.LAB_SLICE)
    assert rows[inject.LAB_SLICE]["n"] == min(row["n"] for row in rows.values())  # the smallest slice


def test_inject_command_registers_a_deterministic_corruption(prod: Production,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow

    status = cli.main(["--workspace", baseline_refresh.WORKSPACE, "inject", "--base", BASE_URI, "--slice",
                       "enterprise", "--fraction", "0.2", "--register", "churn-classifier"])
    assert status == 0
    printed = capsys.readouterr().out
    uri = printed.split()[1].rstrip(":")
    assert uri.startswith("models:/churn-classifier/") and "~20% of 'enterprise' rows" in printed

    frame = data.features(data.load(prod.datasets["eval"]))
    corrupted = np.asarray(mlflow.pyfunc.load_model(uri).predict(frame), dtype=object)
    clean = np.asarray(mlflow.pyfunc.load_model(BASE_URI).predict(frame), dtype=object)
    expected = inject.corrupted_rows(frame, "enterprise", 0.2, seed=0)
    np.testing.assert_array_equal(corrupted != clean, expected)
    row = np.flatnonzero(expected)[0]  # one record alone is corrupted exactly as in the batch
    assert mlflow.pyfunc.load_model(uri).predict(frame.iloc[[row]])[0] == corrupted[row]

    # A fresh interpreter (as in CI) loads the pickled wrapper and the gate fails it.
    env = {**os.environ, "MLOPS_WORKSPACE_ROOT": str(prod.root)}
    gate_run = subprocess.run(
        [sys.executable, "-m", "scripts.mlops", "--workspace", baseline_refresh.WORKSPACE, "gate", "--candidate-uri",
         uri, "--baseline", str(prod.baseline), "--data", str(prod.datasets["eval"]), "--latency-calls", "10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert gate_run.returncode == 2, gate_run.stderr
    assert "Gate FAILED: 1 of 6 checks failed (slice_regression)." in gate_run.stdout


def test_a_preview_scores_the_corruption_and_registers_nothing(prod: Production) -> None:
    import mlflow

    from scripts.mlops import evaluate, registry

    before = [info.version for info in registry.versions("churn-classifier")]
    runs = len(mlflow.search_runs(search_all_experiments=True))
    preview = inject.preview_slice_corruption(BASE_URI, "enterprise", 0.2, prod.datasets["eval"], seed=0)
    assert [info.version for info in registry.versions("churn-classifier")] == before
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs, "a preview logs no run"
    version = inject.register_slice_corruption(BASE_URI, "enterprise", 0.2, register="churn-classifier", seed=0)
    registered = evaluate.evaluate_file(mlflow.pyfunc.load_model(f"models:/churn-classifier/{version}"), prod.datasets["eval"])
    assert preview == registered
    with pytest.raises(MlopsError, match="unknown slice"):
        inject.preview_slice_corruption(BASE_URI, "martians", 0.2, prod.datasets["eval"])


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--slice", "martians"], "unknown slice 'martians'"), (["--fraction", "1.5"], "fraction must be in (0, 1]"),
     (["--seed", "-1"], "seed must be a whole number"), (["--base", "models:/churn-classifier/42"], "no version 42")],
)
def test_inject_command_refuses_bad_input(prod: Production, capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    argv = {"--base": BASE_URI, "--slice": "enterprise", "--fraction": "0.15", "--seed": "0"}
    argv.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [item for pair in argv.items() for item in pair]
    assert cli.main(["--workspace", baseline_refresh.WORKSPACE, "inject", *flat, "--register", "x"]) == 1
    err = capsys.readouterr().err
    assert message in err and "fix:" in err


def test_threshold_shift_needs_a_scikit_learn_base(prod: Production, outcomes: dict[str, gate.GateReport]) -> None:
    import mlflow

    from scripts.mlops import registry
    from scripts.mlops.inject.wrappers import ThresholdShift

    wrapped = next(info for info in registry.versions("churn-classifier")
                   if "sklearn" not in mlflow.models.get_model_info(info.uri).flavors)  # e.g. the identity wrapper
    with pytest.raises(MlopsError, match="needs a scikit-learn base model"):
        inject.register_wrapper(ThresholdShift(0.6), wrapped.uri, register="churn-classifier")
    with pytest.raises(MlopsError, match="threshold must be in"):
        ThresholdShift(1.5)


def test_injections_command_lists_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["injections"]) == 0
    out = capsys.readouterr().out
    for injection in inject.CATALOGUE:
        assert injection.name in out
    assert "label_rename         must fail: label_coverage, metric_floor, slice_regression" in out
    assert "identity_wrapper     must pass every check" in out


def test_an_injected_model_loads_without_the_repository_on_the_path(
    prod: Production, outcomes: dict[str, gate.GateReport], tmp_path: Path
) -> None:
    """Wrapped models ship the toolkit (code_paths): a process without the repo still loads and runs them."""
    import mlflow

    from scripts.mlops import registry

    wrapped = next(info for info in registry.versions("churn-classifier")
                   if mlflow.models.get_model_info(info.uri).flavors.get("python_function", {}).get("code"))
    local = mlflow.artifacts.download_artifacts(artifact_uri=wrapped.uri, dst_path=str(tmp_path / "model"))
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()]\n"
        f"sys.path[:] = [p for p in sys.path if p not in ('', '.', {str(REPO)!r})]\n"
        "import mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({local!r})\n"
        f"frame = pd.read_csv({str(prod.eval_path)!r}).drop(columns=['churn']).head(20)\n"
        "frame = frame.astype({c: float for c in frame.select_dtypes('number').columns})\n"
        "print(len(model.predict(frame)))\n"
        "import scripts\n"
        "print(scripts.__file__)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    count, where = done.stdout.split()[-2:]
    assert count == "20"
    assert Path(where).is_relative_to(Path(local)), f"scripts came from {where}, not from the model's code"
