"""Promotion is one transaction: concurrent promotions and rollbacks lose nothing (issue: no lost history).

Four processes x ten rounds of promote/rollback against one registry -- the embedded SQLite
file, and a real ``mlflow server`` on loopback -- must leave a history with no lost or
duplicated entry, an unbroken from -> to chain per alias, and each alias equal to its last entry.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.mlops import promotion, registry
from scripts.mlops.workspace import open_workspace
from tests.support import ForkedScript, TrainedFactory, TrainedWorkspace

PROCESSES, ROUNDS = 4, 10

WORKER = textwrap.dedent(
    """
    import json, random, sys
    import mlflow
    from scripts.mlops import promotion
    from scripts.mlops.errors import MlopsError

    uri, model, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    rng = random.Random(seed)
    done = []
    for round in range(ROUNDS):
        alias = rng.choice(["staging", "production"])
        try:
            if rng.random() < 0.3:
                result = promotion.rollback(model, alias, actor=f"w{seed}")
            else:
                result = promotion.promote(model, rng.randint(1, 3), alias, actor=f"w{seed}")
            if result.changed:
                done.append(result.entry.seq)
        except MlopsError as exc:
            if "nothing earlier to roll back" in exc.problem or "has no promotion history" in exc.problem:
                continue  # a refusal the rules call for, not a race
            done.append(f"error: {exc.problem}")
    print(json.dumps(done))
    """
).replace("ROUNDS", str(ROUNDS))


def _model_with_three_versions(trained: TrainedWorkspace, name: str) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    first = client.get_model_version(trained.model, "1")
    for _ in range(3):
        client.create_model_version(name, first.source, run_id=first.run_id, model_id=first.model_id)


def _race(uri: str, model: str, cwd: Path) -> list[object]:
    """The workers are separate processes forked from the warm interpreter (:mod:`scripts.mlops.warm`,
    as the deploy gate's steps are): MLflow is imported before the fork, so they start racing within
    milliseconds of each other instead of one import apart."""
    (cwd / "race_worker.py").write_text(WORKER)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    workers = [ForkedScript.start(cwd, "race_worker", [uri, model, str(seed)], env, str(seed))
               for seed in range(PROCESSES)]
    reported: list[object] = []
    for worker in workers:
        reported += json.loads(worker.last_line(300))
    return reported


def _assert_consistent(model: str, reported: list[object]) -> None:
    errors = [item for item in reported if isinstance(item, str)]
    assert not errors, errors
    entries = promotion.history(model)
    seqs = [entry.seq for entry in entries]
    assert sorted(reported) == seqs, "every reported move is in the history exactly once, and nothing else"
    assert seqs == list(range(1, len(seqs) + 1)), "no gap and no duplicate in the numbering"
    for alias in ("staging", "production"):
        mine = [entry for entry in entries if entry.alias == alias]
        for before, after in zip(mine, mine[1:], strict=False):
            assert after.from_version == before.to_version, f"broken chain at entry #{after.seq}"
        current = registry.current_version(model, alias)
        assert current == (mine[-1].to_version if mine else None), f"{alias} is not at its last entry"
    assert promotion.lock_name(model) not in {m.name for m in registry.client().search_registered_models()}
    print(f"\n{model}: {PROCESSES} processes x {ROUNDS} rounds -> {len(entries)} moves recorded, "
          f"{len(reported)} reported, 0 lost, 0 duplicated, aliases at their last entries")


@pytest.fixture(scope="module")
def trained(trained_workspace: TrainedFactory) -> TrainedWorkspace:
    return trained_workspace("concurrency")


@pytest.mark.slow
def test_concurrent_promotions_on_sqlite_lose_nothing(trained: TrainedWorkspace,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    trained.enter(monkeypatch)
    _model_with_three_versions(trained, "race-sqlite")
    uri = f"sqlite:///{(trained.root / '.mlops' / trained.name / 'mlflow.db').resolve()}"
    reported = _race(uri, "race-sqlite", trained.root)
    assert len(reported) >= PROCESSES * ROUNDS // 2, "most rounds moved an alias"
    _assert_consistent("race-sqlite", reported)


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with its own, empty SQLite store (a copy of a migrated one)."""
    from scripts.mlops import contention

    store = contention.sqlite_store(tmp_path / "store")
    with contention.tracking_server(store, tmp_path / "art", tmp_path / "server.log", workers=1) as server:
        yield server.url


@pytest.mark.slow
def test_concurrent_promotions_on_a_tracking_server_lose_nothing(
    tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    monkeypatch.chdir(tmp_path)
    open_workspace("server-client")  # points MLflow at the server (the variable overrides the workspace)
    client = mlflow.MlflowClient()
    run = client.create_run(client.create_experiment("race"))
    client.create_registered_model("race-server")
    for _ in range(3):  # promotion only moves pointers: three versions of one (empty) run suffice
        client.create_model_version("race-server", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    reported = _race(tracking_server, "race-server", tmp_path)
    _assert_consistent("race-server", reported)
