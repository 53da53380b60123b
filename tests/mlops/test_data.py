"""The seeded churn data: reproducible, realistic enough to slice, strict about bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scripts.mlops import data
from scripts.mlops.errors import DataError


def test_generation_is_deterministic_and_written_bytes_are_stable(tmp_path: Path) -> None:
    first = data.write_datasets(tmp_path / "a")
    second = data.write_datasets(tmp_path / "b")
    for name in ("v1", "v2", "eval"):
        # The files come from the bytes kept by batch_csv; a new draw, formatted anew, gives the same.
        assert first[name].read_bytes() == second[name].read_bytes() == data.csv_bytes(data.generate(name))
    pd.testing.assert_frame_equal(data.generate("v1"), data.generate("v1"))


def test_a_damaged_data_file_is_written_again_and_a_correct_one_is_left_alone(tmp_path: Path) -> None:
    paths = data.write_datasets(tmp_path)
    paths["v1"].write_text("customer_id\n")
    kept = paths["v2"].stat().st_mtime_ns
    again = data.write_datasets(tmp_path)
    assert again["v1"].read_bytes() == data.batch_csv("v1")
    assert again["v2"].stat().st_mtime_ns == kept
    with pytest.raises(DataError, match="no batch named 'v3'"):
        data.batch_csv("v3")


def test_frozen_evaluation_set_has_the_pinned_fingerprint(datasets: dict[str, Path]) -> None:
    assert data.fingerprint(datasets["eval"]) == data.FROZEN_EVAL_SHA256


def test_changed_evaluation_set_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "FROZEN_EVAL_SHA256", "sha256:" + "0" * 64)
    with pytest.raises(DataError, match="frozen evaluation set"):
        data.write_datasets(tmp_path)


def test_table_has_schema_segments_of_unequal_size_and_both_labels(datasets: dict[str, Path]) -> None:
    frame = data.load(datasets["v1"])
    assert list(frame.columns) == list(data.COLUMNS)
    assert len(frame) >= 5000
    sizes = frame[data.SEGMENT].value_counts()
    assert set(sizes.index) == set(data.SEGMENTS) and len(sizes) >= 4
    assert sizes.max() > 3 * sizes.min(), "segments should differ in size"
    rates = frame.groupby(data.SEGMENT)[data.LABEL].apply(lambda s: (s == "yes").mean())
    assert rates.max() - rates.min() > 0.1, "segments should differ in churn behaviour"
    assert set(frame[data.LABEL]) == set(data.LABELS)
    assert frame[data.ID].is_unique


def test_later_batch_is_shifted(datasets: dict[str, Path]) -> None:
    v1, v2 = data.load(datasets["v1"]), data.load(datasets["v2"])
    assert v2["monthly_charges"].mean() > 1.05 * v1["monthly_charges"].mean()
    share = lambda f, value: (f["contract"] == value).mean()  # noqa: E731
    assert share(v2, "month_to_month") > share(v1, "month_to_month") + 0.05
    assert (v2[data.SEGMENT] == "student").mean() > (v1[data.SEGMENT] == "student").mean() + 0.05


def test_fingerprint_format_and_sensitivity(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    before = data.fingerprint(path)
    assert before.startswith("sha256:") and len(before) == len("sha256:") + 64
    path.write_text("a,b\n1,3\n")
    assert data.fingerprint(path) != before
    with pytest.raises(DataError, match="no such file"):
        data.fingerprint(tmp_path / "missing.csv")


@pytest.fixture
def frame(datasets: dict[str, Path]) -> pd.DataFrame:
    return pd.read_csv(datasets["eval"]).head(50)


def test_missing_columns_are_named(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    frame.drop(columns=["contract", "tenure_months"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['contract', 'tenure_months'\]"):
        data.load(path)


def test_unknown_labels_are_named_with_the_fix(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    frame.assign(churn=frame["churn"].map({"yes": "Yes", "no": "No"})).to_csv(path, index=False)
    with pytest.raises(DataError) as caught:
        data.load(path)
    assert "unknown label(s) ['No', 'Yes']" in str(caught.value)
    assert "normalise the labels" in str(caught.value)


def test_empty_file_and_header_only_file(tmp_path: Path, frame: pd.DataFrame) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        data.load(empty)
    header_only = tmp_path / "header.csv"
    frame.head(0).to_csv(header_only, index=False)
    with pytest.raises(DataError, match="has no rows"):
        data.load(header_only)


def test_missing_file_non_numeric_values_unknown_categories_and_holes(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        data.load(tmp_path / "nope.csv")
    bad = frame.astype({"monthly_charges": object})
    bad.loc[3, "monthly_charges"] = "n/a"
    with pytest.raises(DataError, match="'monthly_charges' must be numeric, found 'n/a'"):
        data.validate(bad)
    with pytest.raises(DataError, match=r"'contract' has unknown value\(s\) \['monthly'\]"):
        data.validate(frame.assign(contract="monthly"))
    holes = frame.copy()
    holes.loc[0, "region"] = None
    with pytest.raises(DataError, match=r"missing values in \['region'\]"):
        data.validate(holes)
