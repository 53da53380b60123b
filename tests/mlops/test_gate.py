"""The promotion gate: every check passes good evidence and fails closed on bad or missing evidence."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scripts.mlops import baseline_refresh, cli, data, gate, inject
from scripts.mlops.errors import DataError, MlopsError
from scripts.mlops.gate import (
    CheckResult,
    EvalSetMatch,
    Evidence,
    LabelCoverage,
    LatencyBudget,
    MetricFloor,
    SchemaMatch,
    SliceRegression,
)
from tests.support import Production

OTHER_HASH = "sha256:" + "0" * 64


def doc(buckets: dict[str, tuple[Any, Any]], *, labels: Any = ("no", "yes"), eval_hash: Any = data.FROZEN_EVAL_SHA256,
        overall: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """An evaluation document; ``overall`` defaults to the n-weighted mean of the buckets."""
    if overall is None:
        n = sum(size for _, size in buckets.values())
        accuracy = sum(acc * size for acc, size in buckets.values()) / n if n else float("nan")
        overall = (round(accuracy, 4), n)
    document: dict[str, Any] = {
        "eval_set_hash": eval_hash,
        "overall": {"accuracy": overall[0], "n": overall[1]},
        "buckets": {name: {"accuracy": acc, "n": size} for name, (acc, size) in buckets.items()},
    }
    if labels is not None:
        document["labels"] = list(labels)
    return document


BASE = doc({"consumer": (0.8022, 1102), "enterprise": (0.7805, 205), "small_business": (0.8064, 661),
            "student": (0.7292, 432)})


def slice_rows(result: CheckResult) -> dict[str, dict[str, Any]]:
    return {row["slice"]: row for row in result.details["rows"]}


# ----------------------------------------------------------------------------- metric floor


def test_metric_floor_passes_at_or_above_the_floor_and_fails_below() -> None:
    check = MetricFloor(floor=0.75)
    assert check(Evidence(candidate=doc({"a": (0.76, 100)}))).passed
    assert check(Evidence(candidate=doc({"a": (0.75, 100)}))).passed  # equal to the floor
    low = check(Evidence(candidate=doc({"a": (0.7499, 100)})))
    assert not low.passed and "below the floor 0.75" in low.reason


@pytest.mark.parametrize(
    ("overall", "expected"),
    [((float("nan"), 100), "NaN"), ((None, 100), "missing"), (("0.8", 100), "not a finite number"),
     ((float("inf"), 100), "not a finite number"), ((0.9, 0), "0 rows"), ((0.9, None), "None rows")],
)
def test_metric_floor_fails_closed_on_bad_metrics_and_empty_sets(overall: tuple[Any, Any], expected: str) -> None:
    candidate = doc({"a": (0.9, 100)}, overall=overall)
    if overall[0] is None:
        del candidate["overall"]["accuracy"]
    result = MetricFloor(floor=0.5)(Evidence(candidate=candidate))
    assert not result.passed and expected in result.reason


def test_metric_floor_without_candidate_evidence_says_why() -> None:
    result = MetricFloor()(Evidence(problems={"candidate": "the candidate could not be evaluated: boom"}))
    assert not result.passed and "boom" in result.reason
    assert not MetricFloor()(Evidence(candidate={"buckets": {}})).passed  # no 'overall' section


# ----------------------------------------------------------------------------- slice regression


@pytest.mark.parametrize(
    ("baseline", "candidate", "tolerance", "passed"),
    [
        (0.80, 0.78, 0.02, True),  # 0.80 - 0.78 == 0.020000000000000018 in floats: still "equal"
        (0.7805, 0.7605, 0.02, True),
        (0.80, 0.7799, 0.02, False),  # one unit of the 4th decimal over
        (0.80, 0.78 - 1e-7, 0.02, False),  # a hair over
        (0.80, 0.80, 0.0, True),
        (0.80, 0.7999, 0.0, False),
        (0.70, 0.95, 0.02, True),  # improvements pass
    ],
)
def test_slice_boundary_is_inclusive_and_float_safe(baseline: float, candidate: float, tolerance: float,
                                                     passed: bool) -> None:
    result = SliceRegression(tolerance=tolerance)(
        Evidence(candidate=doc({"s": (candidate, 500)}), baseline=doc({"s": (baseline, 500)})))
    assert result.passed is passed, result.reason
    assert slice_rows(result)["s"]["drop"] == pytest.approx(baseline - candidate)


def test_slice_regression_names_every_failing_slice_and_passes_the_others() -> None:
    candidate = doc({"consumer": (0.8022, 1102), "enterprise": (0.6683, 205), "small_business": (0.8100, 661),
                     "student": (0.7100, 432)})
    result = SliceRegression(tolerance=0.02)(Evidence(candidate=candidate, baseline=BASE))
    assert not result.passed
    rows = slice_rows(result)
    assert {name for name, row in rows.items() if row["status"] == "fail"} == {"enterprise"}
    assert rows["enterprise"]["drop"] == pytest.approx(0.1122)
    assert "enterprise: dropped 0.1122 > tolerance 0.02" in result.reason
    assert SliceRegression(tolerance=0.02)(Evidence(candidate=BASE, baseline=BASE)).passed


def test_slice_regression_fails_closed_on_missing_new_and_bad_slices() -> None:
    candidate = doc({"consumer": (float("nan"), 1102), "small_business": (0.81, 661), "student": (0.73, 432),
                     "newcomers": (0.99, 300)})
    candidate["buckets"]["small_business"].pop("accuracy")
    candidate["buckets"]["student"].pop("n")
    result = SliceRegression()(Evidence(candidate=candidate, baseline=BASE))
    rows = slice_rows(result)
    assert not result.passed
    assert rows["enterprise"]["reason"] == "slice is missing from the candidate evaluation"
    assert rows["newcomers"]["reason"] == "slice has no baseline to compare against"
    assert rows["consumer"]["reason"] == "candidate accuracy is NaN"
    assert rows["small_business"]["reason"] == "candidate accuracy is missing"
    assert rows["student"]["reason"] == "slice size n is missing or invalid"
    assert all(row["status"] == "fail" for row in rows.values())


@pytest.mark.parametrize(
    ("candidate", "baseline", "expected"),
    [
        (doc({}), BASE, "no slices"),
        (BASE, doc({}), "baseline has no slices"),
        ({"overall": {}}, BASE, "no 'buckets'"),
        (None, BASE, "no candidate evaluation"),
        (BASE, None, "no baseline"),
    ],
)
def test_slice_regression_fails_closed_on_empty_or_absent_documents(candidate: Any, baseline: Any,
                                                                   expected: str) -> None:
    result = SliceRegression()(Evidence(candidate=candidate, baseline=baseline))
    assert not result.passed and expected in result.reason


def test_small_slices_fail_unless_explicitly_allowed_and_are_then_reported() -> None:
    baseline = doc({"big": (0.80, 500), "tiny": (0.90, 12)})
    candidate = doc({"big": (0.80, 500), "tiny": (0.50, 12)})
    strict = SliceRegression(min_slice_size=30)(Evidence(candidate=candidate, baseline=baseline))
    assert not strict.passed and "tiny: n=12 < min slice size 30: too small to judge" in strict.reason
    relaxed = SliceRegression(min_slice_size=30, allow_small_slices=True)(Evidence(candidate=candidate,
                                                                                  baseline=baseline))
    assert relaxed.passed and "skipped as too small: tiny (n=12)" in relaxed.reason
    assert slice_rows(relaxed)["tiny"]["status"] == "skipped"
    only_small = SliceRegression(min_slice_size=30, allow_small_slices=True)(
        Evidence(candidate=doc({"tiny": (0.9, 12)}), baseline=doc({"tiny": (0.9, 12)})))
    assert not only_small.passed and "none could be compared" in only_small.reason


@pytest.mark.parametrize("kwargs", [{"tolerance": -0.01}, {"tolerance": float("nan")}, {"min_slice_size": 0},
                                    {"min_slice_size": 2.5}])
def test_invalid_policies_are_refused_with_a_fix(kwargs: dict[str, Any]) -> None:
    with pytest.raises(MlopsError) as info:
        SliceRegression(**kwargs)
    assert info.value.fix


# ----------------------------------------------------------------------------- labels and eval set


def test_label_coverage() -> None:
    check = LabelCoverage()
    assert check(Evidence(candidate=doc({"a": (0.8, 100)}, labels=["maybe", "no", "yes"]), baseline=BASE)).passed
    renamed = check(Evidence(candidate=doc({"a": (0.0, 100)}, labels=["No", "Yes"]), baseline=BASE))
    assert not renamed.passed
    assert renamed.reason == "New labels set ('No', 'Yes') does not cover baseline {'no', 'yes'}"
    empty = check(Evidence(candidate=doc({"a": (0.0, 100)}, labels=[]), baseline=BASE))
    assert empty.reason == "New labels set () does not cover baseline {'no', 'yes'}"
    assert empty.details["missing"] == ["no", "yes"]
    one_class = check(Evidence(candidate=doc({"a": (0.7, 100)}, labels=["no"]), baseline=BASE))
    assert not one_class.passed and one_class.details["missing"] == ["yes"]
    assert not check(Evidence(candidate=doc({"a": (0.8, 100)}, labels=None), baseline=BASE)).passed
    no_baseline_labels = check(Evidence(candidate=BASE, baseline=doc({"a": (0.8, 100)}, labels=None)))
    assert not no_baseline_labels.passed and "baseline records no 'labels'" in no_baseline_labels.reason


def test_eval_set_fingerprint_must_match_and_be_a_fingerprint() -> None:
    check = EvalSetMatch()
    assert check(Evidence(candidate=BASE, baseline=BASE)).passed
    other = check(Evidence(candidate=doc({"a": (0.8, 100)}, eval_hash=OTHER_HASH), baseline=BASE))
    assert not other.passed and "different file" in other.reason
    for bad in (None, "", "md5:abc"):
        same_but_bad = doc({"a": (0.8, 100)}, eval_hash=bad)
        assert not check(Evidence(candidate=same_but_bad, baseline=same_but_bad)).passed


# ----------------------------------------------------------------------------- schema


def _schema(columns: dict[str, str]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec(kind, name) for name, kind in columns.items()]))


PROD_COLUMNS = {name: ("double" if name in data.NUMERIC else "string") for name in data.FEATURES}


def test_schema_match_compares_names_and_types_not_order() -> None:
    check = SchemaMatch()
    reordered = dict(reversed(list(PROD_COLUMNS.items())))
    assert check(Evidence(candidate_signature=_schema(reordered), production_signature=_schema(PROD_COLUMNS))).passed
    dropped = {k: v for k, v in PROD_COLUMNS.items() if k != "data_usage_gb"}
    result = check(Evidence(candidate_signature=_schema(dropped), production_signature=_schema(PROD_COLUMNS)))
    assert not result.passed and "missing columns: data_usage_gb" in result.reason
    retyped = {**PROD_COLUMNS, "tenure_months": "long", "promo": "string"}
    result = check(Evidence(candidate_signature=_schema(retyped), production_signature=_schema(PROD_COLUMNS)))
    assert not result.passed
    assert result.details["changed"] == ["tenure_months double->long"] and result.details["extra"] == ["promo"]


def test_schema_match_fails_closed_without_signatures() -> None:
    missing = SchemaMatch()(Evidence(production_signature=_schema(PROD_COLUMNS),
                                     problems={"candidate_signature": "models:/m/2 was logged without a signature"}))
    assert not missing.passed and "logged without a signature" in missing.reason
    assert not SchemaMatch()(Evidence(candidate_signature=_schema(PROD_COLUMNS))).passed


# ----------------------------------------------------------------------------- latency


class FakeModel:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.rows: list[int] = []

    def predict(self, frame: pd.DataFrame) -> list[str]:
        self.rows.append(len(frame))
        time.sleep(self.delay_s)
        return ["no"] * len(frame)


SAMPLE = pd.DataFrame({"x": range(5)})


def test_latency_times_a_bounded_number_of_single_record_calls() -> None:
    fast = FakeModel()
    result = LatencyBudget(budget_ms=50, calls=7)(Evidence(model=fast, sample=SAMPLE))
    assert result.passed and result.details["calls"] == 7
    assert fast.rows == [1] * (7 + gate.LATENCY_WARMUP_CALLS)
    slow = LatencyBudget(budget_ms=1, calls=3)(Evidence(model=FakeModel(delay_s=0.005), sample=SAMPLE))
    assert not slow.passed and "exceeds the budget of 1 ms" in slow.reason and slow.details["p95_ms"] >= 5
    for calls in (0, gate.MAX_LATENCY_CALLS + 1):
        with pytest.raises(MlopsError, match="latency calls"):
            LatencyBudget(calls=calls)


def test_latency_fails_closed_without_model_or_sample() -> None:
    assert not LatencyBudget()(Evidence(sample=SAMPLE)).passed
    assert not LatencyBudget()(Evidence(model=FakeModel(), sample=SAMPLE.head(0))).passed


# ----------------------------------------------------------------------------- the gate and its report


def test_gate_fails_closed_on_exceptions_wrong_returns_and_no_checks() -> None:
    def explodes(evidence: Evidence) -> CheckResult:
        raise ZeroDivisionError("division by zero")

    def says_yes(evidence: Evidence) -> bool:
        return True

    report = gate.run_gate([explodes, says_yes, MetricFloor(floor=0.5)], Evidence(candidate=BASE))
    assert not report.passed
    assert report["explodes"].reason == "the check raised ZeroDivisionError: division by zero"
    assert "returned bool" in report["says_yes"].reason
    assert report["metric_floor"].passed  # later checks still ran
    assert report.failed_names() == {"explodes", "says_yes"}
    empty = gate.run_gate([], Evidence(candidate=BASE))
    assert not empty.passed and "no checks" in empty.results[0].reason


def test_default_checks_pass_good_evidence() -> None:
    evidence = Evidence(candidate=BASE, baseline=BASE, model=FakeModel(), sample=SAMPLE,
                        candidate_signature=_schema(PROD_COLUMNS), production_signature=_schema(PROD_COLUMNS))
    report = gate.run_gate(gate.default_checks(latency_calls=5), evidence)
    assert report.passed, report.to_markdown()
    assert [r.name for r in report.results] == ["metric_floor", "slice_regression", "label_coverage",
                                                "eval_set_fingerprint", "input_schema", "latency_p95"]
    assert report.summary() == "Gate PASSED: all 6 checks passed."


def test_report_renders_as_markdown_and_dataframes() -> None:
    candidate = doc({"consumer": (0.8022, 1102), "enterprise": (0.6683, 205), "small_business": (0.8064, 661),
                     "student": (0.7292, 432)}, labels=["a|b"])
    report = gate.run_gate([SliceRegression(), LabelCoverage()], Evidence(candidate=candidate, baseline=BASE))
    markdown = report.to_markdown().splitlines()
    assert markdown[:2] == ["| check | verdict | reason |", "|---|---|---|"]
    assert markdown[2].startswith("| slice_regression | **FAIL** | 1 of 4 slices failed")
    assert "'a\\|b'" in markdown[3]  # pipes inside cells are escaped
    assert report._repr_markdown_().startswith("**Gate FAILED: 2 of 2 checks failed")
    frame = report.to_frame()
    assert list(frame.columns) == ["verdict", "reason"] and frame.loc["label_coverage", "verdict"] == "FAIL"
    slices = report.slices()
    assert slices.loc["enterprise", "status"] == "fail" and slices.loc["consumer", "drop"] == 0
    table = gate.slice_markdown([r for r in report["slice_regression"].details["rows"] if r["status"] == "fail"])
    assert "| enterprise | 0.7805 | 0.6683 | +0.1122 | 0.02 |" in table


# ----------------------------------------------------------------------------- evaluation files


def test_load_evaluation_rejects_unusable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        gate.load_evaluation(tmp_path / "nope.json")
    cases = {"broken.json": "{not json", "list.json": "[1, 2]", "keys.json": json.dumps({"buckets": {}}),
             "types.json": json.dumps({"eval_set_hash": "x", "overall": {}, "buckets": []})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError) as info:
            gate.load_evaluation(tmp_path / name)
        assert info.value.fix
    (tmp_path / "nan.json").write_text(json.dumps(doc({"a": (float("nan"), 10)})))
    assert math.isnan(gate.load_evaluation(tmp_path / "nan.json")["buckets"]["a"]["accuracy"])  # the checks judge it


# ----------------------------------------------------------------------------- against a real registry


def run_cli(*argv: str) -> int:
    return cli.main(["--workspace", baseline_refresh.WORKSPACE, *argv])


def test_baseline_command_describes_the_production_version(prod: Production, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.json"
    assert run_cli("baseline", "--model", "churn-classifier", "--data", str(prod.eval_path), "--out", str(out)) == 0
    document = json.loads(out.read_text())
    assert document == json.loads(prod.baseline.read_text())
    assert document["model"] == "churn-classifier" and document["version"] == 1
    assert document["eval_set_hash"] == data.FROZEN_EVAL_SHA256
    assert "churn-classifier version 1 (@production)" in capsys.readouterr().out
    assert run_cli("baseline", "--model", "churn-classifier", "--alias", "staging", "--data", str(prod.eval_path),
                   "--out", str(out)) == 1
    assert "no alias 'staging'" in capsys.readouterr().err


def test_gate_command_passes_production_and_fails_a_degraded_candidate(
    prod: Production, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # This test is about the slice check. The p95 of 10 calls is about the slowest call, which a
    # loaded CI machine pushed past the default 100 ms once (2 of 6 failed, latency_p95 too): the
    # budget here is wide, and the latency check's own tests keep the default.
    common = ["--baseline", str(prod.baseline), "--data", str(prod.eval_path), "--latency-calls", "10",
              "--latency-budget-ms", "2000"]
    out = tmp_path / "candidate.json"
    assert run_cli("gate", "--candidate-uri", "models:/churn-classifier@production", *common, "--out", str(out)) == 0
    assert "Gate PASSED: all 6 checks passed." in capsys.readouterr().out
    assert json.loads(out.read_text())["buckets"] == json.loads(prod.baseline.read_text())["buckets"]

    version = inject.register_slice_corruption("models:/churn-classifier/1", "enterprise", 0.15,
                                               register="churn-classifier")
    assert run_cli("gate", "--candidate-uri", f"models:/churn-classifier/{version}", *common) == 2
    printed = capsys.readouterr().out
    assert "Gate FAILED: 1 of 6 checks failed (slice_regression)." in printed
    assert "| slice_regression | **FAIL** |" in printed and "| enterprise | 0.7805 |" in printed


def test_gate_command_exits_1_on_unusable_input(prod: Production, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    good = ["--baseline", str(prod.baseline), "--data", str(prod.eval_path)]
    assert run_cli("gate", "--candidate-uri", "models:/churn-classifier/99", *good) == 1
    assert "has no version 99" in capsys.readouterr().err
    assert run_cli("gate", "--candidate-uri", "models:/churn-classifier/1", "--baseline", str(tmp_path / "x.json"),
                   "--data", str(prod.eval_path)) == 1
    assert run_cli("gate", "--candidate-uri", "models:/churn-classifier/1", "--baseline", str(prod.baseline),
                   "--data", str(tmp_path / "missing.csv")) == 1
    assert run_cli("gate", "--candidate-uri", "models:/churn-classifier/1", *good, "--tolerance", "-1") == 1
    assert "tolerance must be a finite number >= 0.0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # a usage error is unusable input too, not "gate failed"
        run_cli("gate", "--baseline", str(prod.baseline))
    assert usage.value.code == 1


def test_collect_evidence_turns_a_broken_candidate_into_failures(prod: Production,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    def broken(uri: str) -> Any:
        raise RuntimeError("cannot unpickle")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", broken)
    baseline = gate.load_evaluation(prod.baseline)
    evidence = gate.collect_evidence("models:/churn-classifier/1", prod.eval_path, baseline)
    report = gate.run_gate(gate.default_checks(latency_calls=5), evidence)
    assert report.failed_names() == {"metric_floor", "slice_regression", "label_coverage", "eval_set_fingerprint",
                                     "latency_p95"}
    assert "RuntimeError: cannot unpickle" in report["metric_floor"].reason
    assert report["input_schema"].passed  # the signature was still readable
