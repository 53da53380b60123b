"""Alias promotion with an append-only history stored in the registry (scripts.mlops.promotion)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest

from scripts.mlops import cli, promotion, registry
from scripts.mlops.errors import MlopsError, RegistryError
from scripts.mlops.procs import free_port
from tests.support import TrainedFactory, TrainedWorkspace

_names = itertools.count(1)


@pytest.fixture(scope="module")
def trained(trained_workspace: TrainedFactory) -> TrainedWorkspace:
    """One trained model; tests register fresh models from its artifacts, so no state leaks between them."""
    return trained_workspace("promotion")


@pytest.fixture(autouse=True)
def _in_workspace(trained: TrainedWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    trained.enter(monkeypatch)


@pytest.fixture
def model(trained: TrainedWorkspace) -> str:
    """A fresh registered model with versions 1, 2 and 3 (same artifacts, different versions)."""
    name = f"churn-promo-{next(_names)}"
    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    source = registry.get_version(trained.model, 1).source
    for _ in range(3):
        client.create_model_version(name, source, run_id=trained.runs[1])
    return name


def fixed_clock(start: datetime = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)):
    ticks = itertools.count()
    return lambda: start + timedelta(minutes=next(ticks))


def alias_version(name: str, alias: str) -> int:
    return registry.version_for_alias(name, alias).version


def test_promote_records_an_entry_in_the_registry(model: str) -> None:
    result = promotion.promote(model, 1, "staging", actor="ana", reason="first release", clock=fixed_clock())

    assert result.changed and result.previous is None and result.version == 1
    assert alias_version(model, "staging") == 1
    tags = mlflow.MlflowClient().get_registered_model(model).tags
    stored = json.loads(tags["promotion.000001"])
    assert stored == {
        "seq": 1,
        "alias": "staging",
        "from_version": None,
        "to_version": 1,
        "actor": "ana",
        "at": "2026-01-05T10:00:00+00:00",
        "action": "promote",
        "reason": "first release",
    }


def test_promote_is_idempotent(model: str) -> None:
    first = promotion.promote(model, 2, "production", actor="ana")
    again = promotion.promote(model, 2, "production", actor="bob")

    assert first.changed
    assert not again.changed and again.entry is None
    assert "already points at version 2" in again.message
    assert len(promotion.history(model)) == 1
    assert alias_version(model, "production") == 2


def test_actor_defaults_to_login_name(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promotion.getpass, "getuser", lambda: "login-name")
    assert promotion.promote(model, 1, "staging").entry.actor == "login-name"  # type: ignore[union-attr]


def test_history_is_oldest_first_and_filters_by_alias(model: str) -> None:
    clock = fixed_clock()
    promotion.promote(model, 1, "staging", actor="ana", clock=clock)
    promotion.promote(model, 1, "production", actor="ana", clock=clock)
    promotion.promote(model, 2, "staging", actor="bob", clock=clock)

    entries = promotion.history(model)
    assert [(e.seq, e.alias, e.from_version, e.to_version) for e in entries] == [
        (1, "staging", None, 1),
        (2, "production", None, 1),
        (3, "staging", 1, 2),
    ]
    assert [e.at for e in entries] == ["2026-01-05T10:00:00+00:00", "2026-01-05T10:01:00+00:00", "2026-01-05T10:02:00+00:00"]
    assert [e.seq for e in promotion.history(model, "staging")] == [1, 3]

    table = promotion.format_history(entries).splitlines()
    assert table[0].split() == ["#", "at", "(UTC)", "alias", "action", "from", "to", "actor", "reason"]
    assert table[3].split()[:7] == ["3", "2026-01-05T10:02:00+00:00", "staging", "promote", "1", "2", "bob"]


def test_rollback_undoes_promotions_one_at_a_time(model: str) -> None:
    for version in (1, 2, 3):
        promotion.promote(model, version, "production", actor="ana")

    back = promotion.rollback(model, "production", actor="oncall")
    assert (back.previous, back.version, alias_version(model, "production")) == (3, 2, 2)
    assert back.entry is not None and back.entry.action == "rollback" and back.entry.actor == "oncall"
    assert back.entry.reason == "rollback of entry #3"

    assert promotion.rollback(model, "production").version == 1
    assert alias_version(model, "production") == 1
    with pytest.raises(RegistryError, match="nothing earlier to roll back to") as excinfo:
        promotion.rollback(model, "production")
    assert "promote --model" in str(excinfo.value.fix)
    assert alias_version(model, "production") == 1

    # A promotion after rollbacks starts a new branch: rolling it back returns to where it started.
    promotion.promote(model, 3, "production")
    assert promotion.rollback(model, "production").version == 1
    actions = [(e.action, e.from_version, e.to_version) for e in promotion.history(model, "production")]
    assert actions == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
        ("promote", 1, 3),
        ("rollback", 3, 1),
    ]


def test_history_entries_are_never_rewritten(model: str) -> None:
    promotion.promote(model, 1, "production")
    promotion.promote(model, 2, "production")
    before = dict(mlflow.MlflowClient().get_registered_model(model).tags)
    promotion.rollback(model, "production")
    promotion.promote(model, 3, "production")
    after = dict(mlflow.MlflowClient().get_registered_model(model).tags)

    assert {key: after[key] for key in before} == before
    assert sorted(after) == [f"promotion.{n:06d}" for n in range(1, 5)]


def test_rollback_without_history_names_the_fix(model: str) -> None:
    with pytest.raises(RegistryError, match="no promotion history") as excinfo:
        promotion.rollback(model, "production")
    assert f"promote --model {model} --version N --alias production" in str(excinfo.value.fix)


def test_rollback_refuses_when_alias_was_moved_outside_the_history(model: str) -> None:
    promotion.promote(model, 1, "production")
    promotion.promote(model, 2, "production")
    mlflow.MlflowClient().set_registered_model_alias(model, "production", "3")

    with pytest.raises(RegistryError, match="changed outside the promotion commands"):
        promotion.rollback(model, "production")
    assert alias_version(model, "production") == 3


def test_unknown_model_lists_the_known_models(model: str) -> None:
    with pytest.raises(RegistryError, match="no registered model named 'churn-nope'") as excinfo:
        promotion.promote("churn-nope", 1, "staging")
    assert model in excinfo.value.problem and "churn-classifier" in excinfo.value.problem
    with pytest.raises(RegistryError, match="no registered model named"):
        promotion.history("churn-nope")


def test_missing_version_lists_existing_versions_and_changes_nothing(model: str) -> None:
    with pytest.raises(RegistryError, match=r"has no version 9; existing versions: \[1, 2, 3\]"):
        promotion.promote(model, 9, "staging")
    assert promotion.history(model) == []
    with pytest.raises(RegistryError, match="no alias 'staging'"):
        registry.version_for_alias(model, "staging")


def test_invalid_alias_is_refused(model: str) -> None:
    for alias in ("latest", "v2", "", "has space"):
        with pytest.raises(MlopsError, match="invalid alias"):
            promotion.promote(model, 1, alias)



@pytest.mark.parametrize("kind", ["file store", "unreachable server"])
def test_a_tracking_uri_without_a_usable_registry_is_a_registry_error(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = (tmp_path / "mlruns").as_uri() if kind == "file store" else f"http://127.0.0.1:{free_port()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)

    expected = "cannot open the model registry at" if kind == "file store" else "does not answer"
    with pytest.raises(RegistryError, match=expected) as excinfo:
        promotion.promote("churn-classifier", 1, "staging")
    assert uri in excinfo.value.problem
    assert "MLFLOW_TRACKING_URI" in str(excinfo.value.fix)


def test_cli_promote_rollback_history(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--workspace", "promotion"]
    assert cli.main([*base, "promote", "--model", model, "--version", "1", "--alias", "production", "--actor", "ana"]) == 0
    assert cli.main([*base, "promote", "--model", model, "--version", "2", "--alias", "production", "--reason", "better"]) == 0
    assert cli.main([*base, "promote", "--model", model, "--version", "2", "--alias", "production"]) == 0
    assert cli.main([*base, "rollback", "--model", model, "--alias", "production"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{model}@production moved from unset to version 1 (entry #1)",
        f"{model}@production moved from version 1 to version 2 (entry #2)",
        f"{model}@production already points at version 2; nothing changed",
        f"{model}@production rolled back from version 2 to version 1 (entry #3)",
    ]

    assert cli.main([*base, "history", "--model", model]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 4 and table[0].startswith("#")
    assert table[2].split()[2:6] == ["production", "promote", "1", "2"] and table[2].endswith("better")
    assert table[3].split()[2:6] == ["production", "rollback", "2", "1"]


def test_cli_errors_print_the_fix_and_exit_1(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--workspace", "promotion", "promote", "--model", model, "--version", "7", "--alias", "staging"]) == 1
    err = capsys.readouterr().err
    assert "error: model" in err and "existing versions: [1, 2, 3]" in err and "fix:" in err
    assert cli.main(["--workspace", "promotion", "rollback", "--model", model, "--alias", "staging"]) == 1
    assert "no promotion history" in capsys.readouterr().err
