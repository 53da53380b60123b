"""compare_baseline: exit codes, output, float-safe boundary, and the committed baseline that cannot drift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.mlops import baseline_refresh, cli, data

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "eval_baseline.json"
OTHER_HASH = "sha256:" + "ab" * 32


def document(buckets: dict[str, float], *, eval_hash: str = data.FROZEN_EVAL_SHA256, n: int = 200) -> dict[str, Any]:
    return {
        "model": "churn-classifier",
        "version": 1,
        "eval_set_hash": eval_hash,
        "labels": ["no", "yes"],
        "overall": {"accuracy": round(sum(buckets.values()) / len(buckets), 4) if buckets else 0.0,
                    "n": n * len(buckets)},
        "buckets": {name: {"accuracy": accuracy, "n": n} for name, accuracy in buckets.items()},
    }


BASE = {"consumer": 0.8022, "enterprise": 0.7805, "small_business": 0.8064, "student": 0.7292}


@pytest.fixture
def write(tmp_path: Path):
    def write(name: str, content: dict[str, Any] | str) -> str:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)

    return write


def run(candidate: str, baseline: str, *extra: str) -> int:
    return cli.main(["compare-baseline", "--candidate", candidate, "--baseline", baseline, "--tolerance", "0.02", *extra])


def test_passing_candidate_prints_one_summary_line(write, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write("b.json", document(BASE))
    candidate = write("c.json", document({**BASE, "student": 0.7100, "consumer": 0.9}))
    assert run(candidate, baseline) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("PASS: all 4 buckets within 0.02 of churn-classifier v1 (largest drop: student +0.0192)")


def test_failing_bucket_prints_a_markdown_table_and_exits_2(write, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write("b.json", document(BASE))
    candidate = write("c.json", document({**BASE, "enterprise": 0.6683, "student": 0.7000}))
    assert run(candidate, baseline) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "FAIL: 2 of 4 buckets failed (tolerance 0.02)"
    assert out[2] == "| bucket | baseline | candidate | drop | tolerance | why |"
    assert out[4].startswith("| enterprise | 0.7805 | 0.6683 | +0.1122 | 0.02 | dropped 0.1122 > tolerance 0.02")
    assert out[5].startswith("| student | 0.7292 | 0.7000 | +0.0292 | 0.02 |")
    assert len(out) == 6  # passing buckets are not listed


def test_the_float_trap_is_real() -> None:
    assert 0.80 - 0.78 > 0.02  # why the comparison needs an epsilon


@pytest.mark.parametrize(
    ("baseline", "candidate", "status"),
    [(0.80, 0.78, 0), (0.7805, 0.7605, 0), (0.80, 0.7799, 2), (0.80, 0.78 - 1e-7, 2)],
)
def test_drop_equal_to_the_tolerance_passes_and_a_hair_over_fails(write, baseline: float, candidate: float,
                                                                    status: int) -> None:
    assert run(write("c.json", document({"s": candidate})), write("b.json", document({"s": baseline}))) == status


def test_hash_mismatch_fails_with_its_own_row(write, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write("b.json", document(BASE))
    candidate = write("c.json", document(BASE, eval_hash=OTHER_HASH))
    assert run(candidate, baseline) == 2
    out = capsys.readouterr().out
    assert out.startswith("FAIL: the evaluation sets differ (eval_set_hash)")
    assert f"| eval_set_hash | {data.FROZEN_EVAL_SHA256} | {OTHER_HASH} | - | must match |" in out


def test_missing_and_nan_buckets_are_failing_rows(write, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write("b.json", document(BASE))
    broken = document({k: v for k, v in BASE.items() if k != "enterprise"})
    broken["buckets"]["student"]["accuracy"] = float("nan")  # json.dumps writes NaN, json.loads reads it back
    assert run(write("c.json", broken), baseline) == 2
    out = capsys.readouterr().out
    assert "| enterprise | 0.7805 | missing | - | 0.02 | slice is missing from the candidate evaluation |" in out
    assert "| student | 0.7292 | NaN | - | 0.02 | candidate accuracy is NaN |" in out


def test_small_buckets_fail_unless_allowed(write, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write("b.json", document(BASE, n=10))
    assert run(baseline, baseline) == 2
    assert "too small to judge" in capsys.readouterr().out
    assert run(baseline, baseline, "--min-slice-size", "10") == 0
    mixed = document(BASE)
    mixed["buckets"]["pets"] = {"accuracy": 1.0, "n": 3}
    assert run(write("m.json", mixed), write("m.json", mixed), "--allow-small-slices") == 0
    assert capsys.readouterr().out.rstrip().endswith("; skipped as too small: pets (n=3)")
    assert run(baseline, baseline, "--allow-small-slices") == 2  # every bucket skipped: nothing was compared


def test_empty_candidate_fails(write, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(write("c.json", document({})), write("b.json", document(BASE))) == 2
    assert "| (slice_regression) | - | - | - | - | the candidate evaluation has no slices" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{oops", "is not valid JSON"), ("[]", "not an object"),
     (json.dumps({"overall": {}, "buckets": {}}), "missing key(s) ['eval_set_hash']"),
     (json.dumps({"eval_set_hash": "x", "overall": {}, "buckets": ["consumer"]}), "'buckets' must be an object")],
)
def test_unusable_input_exits_1_with_the_problem_and_fix(write, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         content: str | None, message: str) -> None:
    baseline = write("b.json", document(BASE))
    candidate = str(tmp_path / "absent.json") if content is None else write("c.json", content)
    assert run(candidate, baseline) == 1
    err = capsys.readouterr().err
    assert message in err and "\nfix: " in err


def test_bad_options_exit_1(write, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = write("b.json", document(BASE))
    assert run(baseline, baseline, "--tolerance", "nan") == 1
    with pytest.raises(SystemExit) as usage:
        cli.main(["compare-baseline", "--candidate", baseline])
    assert usage.value.code == 1


def test_runs_as_a_module(write) -> None:
    baseline = write("b.json", document(BASE))
    failing = write("c.json", document({**BASE, "enterprise": 0.70}))

    def module(candidate: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scripts.mlops.compare_baseline", "--candidate", candidate,
                               "--baseline", baseline, "--tolerance", "0.02"], cwd=REPO, capture_output=True,
                              text=True, timeout=60)

    ok = module(baseline)
    assert ok.returncode == 0 and ok.stdout.startswith("PASS:"), ok.stderr
    bad = module(failing)
    assert bad.returncode == 2 and "| enterprise | 0.7805 | 0.7000 | +0.0805 | 0.02 |" in bad.stdout, bad.stderr
    missing = module(baseline + ".missing")
    assert missing.returncode == 1 and missing.stderr.startswith("error: the candidate file")


# ----------------------------------------------------------------------------- the committed baseline


def test_committed_baseline_has_the_documented_shape() -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed["model"] == "churn-classifier" and committed["version"] == 1
    assert committed["eval_set_hash"] == data.FROZEN_EVAL_SHA256
    assert set(committed["buckets"]) == set(data.SEGMENTS)
    assert sum(bucket["n"] for bucket in committed["buckets"].values()) == committed["overall"]["n"]
    assert cli.main(["compare-baseline", "--candidate", str(COMMITTED), "--baseline", str(COMMITTED)]) == 0


def test_regenerating_the_baseline_gives_the_committed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLOPS_WORKSPACE_ROOT", raising=False)
    fresh = baseline_refresh.regenerate(tmp_path / "eval_baseline.json")
    assert fresh.read_text() == COMMITTED.read_text(), (
        "eval_baseline.json is stale: run `python -m scripts.mlops baseline-refresh` and commit the result")


def test_refresh_check_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def regenerate(out: Path) -> Path:  # stands in for the 5-second retrain, tested above
        Path(out).write_text(COMMITTED.read_text())
        return Path(out)

    monkeypatch.setattr(baseline_refresh, "regenerate", regenerate)
    copy = tmp_path / "eval_baseline.json"
    copy.write_text(COMMITTED.read_text())
    assert cli.main(["baseline-refresh", "--check", "--out", str(copy)]) == 0
    copy.write_text(COMMITTED.read_text().replace('"version": 1', '"version": 2'))
    assert cli.main(["baseline-refresh", "--check", "--out", str(copy)]) == 1
    captured = capsys.readouterr()
    assert '-  "version": 2' in captured.out and '+  "version": 1' in captured.out
    assert "is stale" in captured.err
