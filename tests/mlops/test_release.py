"""Release promotion: atomic index files + MLflow alias, idempotent, refusing, rolled back, serialized."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from scripts.mlops import cli, promotion, release
from scripts.mlops.workspace import Workspace
from tests.support import ForkedScript

REPO = Path(__file__).resolve().parents[2]
SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64


@pytest.fixture
def model(ws: Workspace, tmp_path: Path) -> str:
    """A registered model ``m`` with versions 1-3 (metadata only: tests pass ``sha=``)."""
    import mlflow

    client = mlflow.MlflowClient()
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", source=str(tmp_path), run_id=None)
    return "m"


def _files(folder: Path) -> dict[str, str | None]:
    return {name: (folder / name).read_text() if (folder / name).exists() else None
            for name in (release.TAGS_FILE, release.INDEX_FILE)}


def _alias(model: str, alias: str = "production") -> str | None:
    import mlflow

    found = (mlflow.MlflowClient().get_registered_model(model).aliases or {}).get(alias)
    return None if found is None else str(found)


def test_semver_and_canonical_sha(tmp_path: Path) -> None:
    assert release.normalize_semver("1.2.3") == release.normalize_semver("v1.2.3") == "v1.2.3"
    for bad in ("1.2", "v01.2.3", "1.2.3-rc1", "latest"):
        with pytest.raises(release.MlopsError, match="not a semantic version"):
            release.normalize_semver(bad)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "MLmodel").write_text("x")
    (tmp_path / "a" / "model.pkl").write_bytes(b"\x00\x01")
    first = release.canonical_sha(tmp_path / "a")
    os.utime(tmp_path / "a" / "MLmodel", (0, 0))  # times do not matter...
    assert release.canonical_sha(tmp_path / "a") == first and first.startswith("sha256:")
    (tmp_path / "a" / "model.pkl").write_bytes(b"\x00\x02")  # ...content does
    assert release.canonical_sha(tmp_path / "a") != first


def test_promote_writes_both_files_and_moves_the_alias(model: str, tmp_path: Path) -> None:
    folder = tmp_path / "releases"
    result = release.promote_release(model, 2, "1.0.0", folder, mode="dev", sha=SHA_A, actor="ana")
    assert result.changed and "index entry #1" in result.message
    assert json.loads((folder / "tags.json").read_text()) == {"v1.0.0": SHA_A}
    [line] = release.index_lines(folder)
    assert (line["semver"], line["sha256"], line["version"], line["source"], line["actor"]) == \
        ("v1.0.0", SHA_A, 2, "dev", "ana")
    assert _alias(model) == "2"
    assert promotion.history(model)[-1].to_version == 2
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind


def test_same_bytes_same_semver_is_idempotent(model: str, tmp_path: Path) -> None:
    folder = tmp_path / "releases"
    release.promote_release(model, 2, "v1.0.0", folder, mode="ci", sha=SHA_A)
    before, history = _files(folder), promotion.history(model)
    again = release.promote_release(model, 2, "v1.0.0", folder, mode="ci", sha=SHA_A)
    assert not again.changed and "nothing changed" in again.message
    assert _files(folder) == before and promotion.history(model) == history


def test_a_semver_reused_for_other_bytes_is_refused(model: str, tmp_path: Path) -> None:
    folder = tmp_path / "releases"
    release.promote_release(model, 2, "v1.0.0", folder, mode="ci", sha=SHA_A)
    before = _files(folder)
    with pytest.raises(release.ReleaseRefused, match="v1.0.0 is already released") as caught:
        release.promote_release(model, 3, "v1.0.0", folder, mode="ci", sha=SHA_B)
    assert "new semver" in (caught.value.fix or "")
    assert _files(folder) == before and _alias(model) == "2"
    # the same bytes under a new semver are a new release (a re-release with no model change)
    assert release.promote_release(model, 2, "v1.0.1", folder, mode="ci", sha=SHA_A).changed


def test_mlflow_failure_rolls_the_files_back(model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    folder = tmp_path / "releases"
    release.promote_release(model, 1, "v1.0.0", folder, mode="ci", sha=SHA_A)
    before = _files(folder)

    def broken(*args: object, **kwargs: object) -> None:
        raise promotion.RegistryError("the model registry at 'http://mlflow' cannot be used: connection refused")

    monkeypatch.setattr(promotion, "promote", broken)
    with pytest.raises(release.ReleaseError, match="rolled back") as caught:
        release.promote_release(model, 2, "v1.1.0", folder, mode="ci", sha=SHA_B)
    assert "connection refused" in caught.value.problem and "re-run" in (caught.value.fix or "")
    assert _files(folder) == before and _alias(model) == "1"
    assert "release.v1.1.0" not in (mlflow.MlflowClient().get_model_version(model, "2").tags or {})
    monkeypatch.undo()  # the registry is back: the same command now succeeds
    assert release.promote_release(model, 2, "v1.1.0", folder, mode="ci", sha=SHA_B).changed
    assert [line["semver"] for line in release.index_lines(folder)] == ["v1.0.0", "v1.1.0"]


def test_a_first_release_rolled_back_leaves_no_files(model: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "releases"
    monkeypatch.setattr(promotion, "promote", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(release.ReleaseError, match=r"failed \(boom\)"):
        release.promote_release(model, 1, "v1.0.0", folder, mode="ci", sha=SHA_A)
    assert _files(folder) == {"tags.json": None, "index.jsonl": None} and _alias(model) is None


_RACER = """
import sys, time, pathlib
from scripts.mlops import release
from scripts.mlops.workspace import open_workspace
open_workspace("test", fresh=False)
go = pathlib.Path(sys.argv[1])
pathlib.Path(sys.argv[5]).touch()  # at the start line
while not go.exists():
    time.sleep(0.01)
try:
    result = release.promote_release("m", int(sys.argv[2]), sys.argv[3], "releases", mode="ci", sha=sys.argv[4])
    print("OK", result.changed)
except release.ReleaseRefused as exc:
    print("REFUSED", exc.problem)
"""


@pytest.mark.slow
def test_concurrent_promotions_leave_a_consistent_index(model: str, tmp_path: Path) -> None:
    """Two racers, separate processes forked from the warm interpreter (as the deploy gate's steps
    are), each waiting at a start line until both are there; then both go at once."""
    (tmp_path / "racer.py").write_text(_RACER)
    go = tmp_path / "go"

    def race(*candidates: tuple[int, str, str]) -> list[str]:
        ready = [tmp_path / f"ready-{index}" for index in range(len(candidates))]
        racers = [ForkedScript.start(tmp_path, "racer", [str(go), str(v), s, sha, str(flag)], dict(os.environ), str(i))
                  for i, ((v, s, sha), flag) in enumerate(zip(candidates, ready, strict=True))]
        deadline = time.monotonic() + 60
        while not all(flag.exists() for flag in ready):
            assert time.monotonic() < deadline and all(r.process.poll() is None for r in racers), [
                r.err.read_text() for r in racers]
            time.sleep(0.01)
        go.touch()
        verdicts = [racer.last_line(120) for racer in racers]
        go.unlink()
        for flag in ready:
            flag.unlink()
        return verdicts

    # the same semver for two different models: one wins, the other is refused, nothing is lost
    verdicts = race((2, "v2.0.0", SHA_A), (3, "v2.0.0", SHA_B))
    assert sorted(v.split()[0] for v in verdicts) == ["OK", "REFUSED"], verdicts
    lines = release.index_lines(tmp_path / "releases")
    assert len(lines) == 1 and json.loads((tmp_path / "releases" / "tags.json").read_text()) == \
        {"v2.0.0": lines[0]["sha256"]}
    assert _alias(model) == str(lines[0]["version"])
    # two different semvers at once: both land, one after the other, with distinct sequence numbers
    verdicts = race((2, "v2.1.0", SHA_A), (3, "v2.2.0", SHA_B))
    assert all(v.startswith("OK True") for v in verdicts), verdicts
    assert [line["seq"] for line in release.index_lines(tmp_path / "releases")] == [1, 2, 3]


def test_a_held_lock_gives_a_clear_error(model: str, tmp_path: Path) -> None:
    with release.locked(tmp_path / "releases"):
        with pytest.raises(release.ReleaseError, match="another release promotion has held"):
            release.promote_release(model, 1, "v1.0.0", tmp_path / "releases", mode="ci", sha=SHA_A,
                                    lock_timeout=0.2)


def test_only_ci_or_an_explicit_dev_mode_may_release(capsys: pytest.CaptureFixture[str]) -> None:
    assert release.require_release_mode({"GITHUB_ACTIONS": "true"}) == "ci"
    assert release.require_release_mode({"MLOPS_ENV": "dev"}) == "dev"
    assert "Production promotion is CI's job" in capsys.readouterr().err
    with pytest.raises(release.ReleaseRefused, match="promoted by CI") as caught:
        release.require_release_mode({})
    assert "MLOPS_ENV=dev" in (caught.value.fix or "")


def test_release_command_refuses_outside_ci_and_has_no_force(ws: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("GITHUB_ACTIONS", "MLOPS_ENV"):
        monkeypatch.delenv(key, raising=False)
    argv = ["--workspace", "test", "release", "promote", "--model", "m", "--version", "1", "--semver", "v1.0.0",
            "--releases", "rel"]
    assert cli.main(argv) == 2
    assert "refused: releases are promoted by CI" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*argv, "--force"])
    sources = "\n".join(p.read_text() for p in (REPO / "scripts").rglob("*.py"))
    assert 'add_argument("--force"' not in sources and "add_argument('--force'" not in sources
