"""MLflow's module-to-distributions map, kept in the environment between warm interpreters
(scripts/mlops/_packages_map.py): the kept map is the one MLflow builds, and anything installed,
removed or reinstalled, or a damaged file, means building it again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mlflow.utils import requirements_utils

from scripts.mlops import _packages_map


@pytest.fixture
def unbuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a new interpreter: MLflow has not built its map yet (restored afterwards)."""
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)


def test_the_kept_map_is_the_one_mlflow_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = tmp_path / "map.json"
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    assert _packages_map.load_or_build(kept) is False  # built by MLflow, then written
    built = requirements_utils._MODULES_TO_PACKAGES
    assert isinstance(built, dict) and "sklearn" in built and "mlflow" in built
    assert json.loads(kept.read_text())["map"] == built

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    assert _packages_map.load_or_build(kept) is True  # read back, not built
    assert requirements_utils._MODULES_TO_PACKAGES == built
    assert requirements_utils._MODULES_TO_PACKAGES.get("sklearn") == ["scikit-learn"]
    assert _packages_map.load_or_build(kept) is False  # a process that has its map keeps it


def test_installing_removing_or_reinstalling_a_package_changes_the_key(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    empty = _packages_map.environment_key([str(site)])
    (site / "demo-1.0.dist-info").mkdir()
    installed = _packages_map.environment_key([str(site)])
    assert installed != empty
    os.utime(site / "demo-1.0.dist-info", ns=(1, 1))  # the same version installed again
    assert _packages_map.environment_key([str(site)]) not in (empty, installed)
    (site / "demo-1.0.dist-info").rename(site / "demo-1.1.dist-info")  # upgraded
    assert _packages_map.environment_key([str(site)]) not in (empty, installed)
    (site / "demo-1.1.dist-info").rmdir()
    assert _packages_map.environment_key([str(site)]) == empty
    assert _packages_map.environment_key([str(tmp_path / "missing"), str(site)]) == empty


DAMAGED = {
    "damaged": lambda key: "{",
    "not-a-mapping": lambda key: "[]",
    "other-key": lambda key: json.dumps({"key": "another environment", "map": {"sklearn": ["scikit-learn"]}}),
    "bad-values": lambda key: json.dumps({"key": key, "map": {"sklearn": "scikit-learn"}}),
}


@pytest.mark.parametrize("kind", DAMAGED)
def test_a_damaged_or_foreign_file_is_built_again_and_replaced(tmp_path: Path, unbuilt: None, kind: str) -> None:
    kept = tmp_path / "map.json"
    kept.write_text(DAMAGED[kind](_packages_map.environment_key()))
    assert _packages_map.load_or_build(kept) is False
    rewritten = json.loads(kept.read_text())
    assert rewritten["key"] == _packages_map.environment_key()
    assert rewritten["map"] == requirements_utils._MODULES_TO_PACKAGES


def test_a_location_that_cannot_be_written_only_means_building(tmp_path: Path, unbuilt: None) -> None:
    nowhere = tmp_path / "missing-folder" / "map.json"
    assert _packages_map.load_or_build(nowhere) is False
    assert isinstance(requirements_utils._MODULES_TO_PACKAGES, dict) and not nowhere.parent.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
