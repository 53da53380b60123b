"""Plain-data export and the grader's comparisons (fast, no kernel)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest

from scripts.grading import export, judge


def test_export_gives_plain_data_and_refuses_look_alikes() -> None:
    frame = pd.DataFrame({"model": ["hgb"], "accuracy": [0.78]})
    assert export.plain(frame) == {"columns": ["model", "accuracy"], "index": [0], "records": [["hgb", 0.78]]}
    assert export.plain({"a": {3, 1}, "b": (1, None)}) == {"a": [1, 3], "b": [1, None]}

    @dataclass
    class Result:
        version: int

    assert export.plain(Result(2)) == {"version": 2}

    class Sneaky(str):
        def __eq__(self, other: object) -> bool:
            return True

    for value in (Sneaky("x"), lambda: 1, object()):
        with pytest.raises(export.NotPlainData):
            export.plain(value)
    answers = json.loads(export.dumps({"x": 41, "s": Sneaky("y")}, {"a": "x + 1", "b": "s", "c": "missing", "d": "letters('c, a')"}))
    assert answers["a"] == {"value": 42} and answers["d"] == {"value": ["A", "C"]}
    assert "NotPlainData" in answers["b"]["error"] and "NameError" in answers["c"]["error"]


def test_comparisons_are_strict_about_types_and_tolerant_about_floats() -> None:
    assert judge.same([["hgb", 0.7829000001]], [["hgb", 0.7829]], tol=1e-6)
    assert not judge.same(True, 1) and not judge.same(1, True) and not judge.same("1", 1)
    assert not judge.same({"a": 1}, {"a": 1, "b": 2}) and not judge.same(float("nan"), 0.0, tol=1.0)
    assert judge.lookup({"m": {"versions": {"2": {"tags": {"gate.verdict": "fail"}}}}},
                        ["m", "versions", 2, "tags", "gate.verdict"]) == "fail"
    assert judge.lookup({"h": [1, 2, 3]}, ["h", -1]) == 3 and judge.lookup({}, ["x"]) is judge.MISSING


def test_a_judgment_fails_with_the_reason_and_hides_secret_answers() -> None:
    entry = {"id": "c/a", "what": "answer_staging", "points": 2, "answer": "letters(answer_staging)", "secret": True}
    wrong = judge.judge(entry, {"c/a": {"value": ["A"]}}, {}, ["A", "C"])
    assert not wrong.passed and wrong.earned == 0 and "A', 'C" not in wrong.message and "found ['A']" in wrong.message
    missing = judge.judge(entry, {"c/a": {"error": "NameError: name 'answer_staging' is not defined"}}, {}, ["A", "C"])
    assert "is not defined" in missing.message
    fact = {"id": "c/b", "what": "alias", "points": 1, "fact": ["m", "aliases", "champion"], "op": "exists"}
    assert judge.judge(fact, {}, {"m": {"aliases": {"champion": 2}}}, judge.MISSING).earned == 1


def test_includes_ignores_extra_keys_but_not_wrong_values() -> None:
    entry = {"id": "c/i", "what": "gate tags by run", "points": 1, "fact": ["m", "by_run_name"], "op": "includes"}
    expected = {"inject-a": {"tags": {"gate.verdict": "fail"}}}
    extra = {"m": {"by_run_name": {"inject-a": {"tags": {"gate.verdict": "fail"}}, "inject-try-2": {"tags": {}}}}}
    assert judge.judge(entry, {}, extra, expected).passed
    wrong = {"m": {"by_run_name": {"inject-a": {"tags": {"gate.verdict": "pass"}}}}}
    assert not judge.judge(entry, {}, wrong, expected).passed
    assert not judge.judge(entry, {}, {"m": {"by_run_name": {}}}, expected).passed
    assert not judge.judge({**entry, "op": None}, {}, extra, expected).passed, "without includes, extra keys count"


def test_probe_finds_versions_by_what_they_are(ws, datasets) -> None:
    from mlflow import MlflowClient

    from scripts.grading import probe
    from scripts.mlops import train

    for kind in ("logreg", "hgb", "hgb"):  # a learner who registered the hgb candidate twice
        train.train_and_log(datasets["v1"], datasets["eval"], train.TrainConfig(model=kind, seed=42), register="m")
    client = MlflowClient()
    client.set_registered_model_alias("m", "champion", "1")
    client.set_model_version_tag("m", "3", "gate.verdict", "fail")
    model = probe.facts(ws.root / "mlflow.db")["m"]
    assert model["versions"]["2"]["run_name"] == "hgb-seed42"
    assert model["latest_by_param"]["model"]["hgb"] == {"version": 3, "tags": {"gate.verdict": "fail"}, "aliases": []}
    assert model["latest_by_param"]["model"]["logreg"]["aliases"] == ["champion"]
    assert model["by_run_name"]["hgb-seed42"] == {"tags": {"gate.verdict": "fail"}, "aliases": []}
    assert model["alias_run_names"] == {"champion": "logreg-seed42"}


def test_probe_lists_the_figures_a_promotion_reason_cites() -> None:
    """01.3-e: a reason's figures, not its text, per history entry; checkpoint moves left out."""
    import json

    from scripts.grading import judge, probe

    def entry(seq: int, reason: str) -> dict:
        raw = {"alias": "production", "action": "promote", "from_version": seq - 1 or None, "to_version": seq,
               "actor": "lab-01", "reason": reason}
        return probe._history(json.dumps(raw))

    model = {"versions": {}, "aliases": {}, "history": [
        entry(1, "first release"),
        entry(2, "served 0.7829 on the frozen set (logged 0.7829; overall -0.0054), 12.5 % faster"),
        entry(3, "checkpoint after 01.3: 0.1234"),
    ]}
    probe._derive(model)
    assert model["reason_figures_by_alias"] == {"production": [{}, {"-0.0054": True, "0.7829": True}]}
    rule = {"id": "e", "points": 1, "fact": ["m", "reason_figures_by_alias", "production", 1], "op": "includes"}
    facts = {"m": model}
    assert judge.judge(rule, {}, facts, {"0.7829": True}).passed, "other figures may be cited too"
    assert not judge.judge(rule, {}, facts, {"0.7830": True}).passed
    assert not judge.judge({**rule, "fact": ["m", "reason_figures_by_alias", "production", 0]}, {}, facts,
                           {"0.7829": True}).passed
