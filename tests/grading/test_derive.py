"""Trusted derivations: the grader reads text answers (YAML, expressions) itself, equivalent spellings alike."""

from __future__ import annotations

import pytest

from scripts.grading import authoring, derive, judge

SHIPPED = "permissions: {}\n\nconcurrency:\n  group: deploy-gate-churn-classifier\n  cancel-in-progress: false\n"


@pytest.mark.parametrize(("text", "permissions", "scope", "cancel"), [
    (SHIPPED, {}, "one per model", False),
    ("# least privilege\npermissions: {}\nconcurrency: deploy-gate-churn-classifier\n", {}, "one per model", False),
    ("permissions: {}\nconcurrency:\n  group: ${{ github.workflow }}-churn-classifier\n", {}, "one per model", False),
    ("permissions: read-all\nconcurrency:\n  group: deploy\n  cancel-in-progress: true\n",
     "read-all", "one for all models", True),
    ("permissions:\n  contents: write\nconcurrency:\n  group: gate-${{ github.head_ref }}\n",
     {"contents": "write"}, "varies per run", False),
    ("permissions:\nconcurrency:\n  group: churn-classifier-${{ github.run_id }}\n  cancel-in-progress: ${{ true }}\n",
     "empty value (YAML null)", "varies per run", "varies"),
    ("concurrency:\n  cancel-in-progress: false\n", "missing", "missing", False),
])
def test_hardening_is_read_by_meaning_not_spelling(text: str, permissions: object, scope: str, cancel: object) -> None:
    assert derive.apply("top_permissions", text) == permissions
    assert derive.apply("concurrency_scope", text) == scope
    assert derive.apply("cancel_in_progress", text) == cancel


@pytest.mark.parametrize(("value", "message"), [
    (["permissions: {}"], "must be text"),
    ("x" * (derive.MAX_TEXT + 1), "longer than"),
    ("permissions: [unclosed\n", "not valid YAML"),
    ("a: &big [1, 2]\nb: *big\n", "anchors and aliases"),
    ("- just a list\n", "must be a YAML mapping"),
])
def test_unreadable_answers_get_a_reason(value: object, message: str) -> None:
    with pytest.raises(derive.DeriveError, match=message):
        derive.apply("top_permissions", value)


def test_the_linters_run_on_the_real_workflow_with_the_answer_spliced_in() -> None:
    assert derive.apply("lint_findings", SHIPPED) == []
    assert derive.apply("lint_findings", "permissions: write-all\n") == [
        "zizmor:concurrency-limits", "zizmor:excessive-permissions"]
    assert "actionlint:syntax-check" in derive.apply("lint_findings", "permissions: {}\nconcurrency:\n  grop: x\n")
    with pytest.raises(derive.DeriveError, match="may only set"):
        derive.apply("lint_findings", "permissions: {}\njobs: {}\n")


def test_promote_condition_truth_table() -> None:
    assert derive.apply("promote_truth_table", "needs.gate.result == 'success'") == [True, False, False, False]
    assert derive.apply("promote_truth_table", "success()") == [True, True, True, True]
    with pytest.raises(derive.DeriveError, match="cannot be evaluated"):
        derive.apply("promote_truth_table", "hashFiles('x') != ''")
    with pytest.raises(derive.DeriveError, match="no derivation"):
        derive.apply("eval", "1")


def test_the_judge_derives_before_comparing() -> None:
    entry = {"id": "a", "what": "scope", "points": 1, "answer": "hardening", "derive": "concurrency_scope"}
    rewritten = "concurrency:\n  group: churn-classifier-deploys\n"
    assert judge.judge(entry, {"a": {"value": rewritten}}, {}, "one per model").passed
    verdict = judge.judge(entry, {"a": {"value": "concurrency: ["}}, {}, "one per model")
    assert not verdict.passed and "not valid YAML" in verdict.message
    wrong = judge.judge(entry, {"a": {"value": "concurrency: gate-${{ github.ref }}\n"}}, {}, "one per model")
    assert not wrong.passed and "'varies per run'" in wrong.message


def test_authoring_refuses_an_unknown_derivation() -> None:
    entries = [{"id": "a", "points": 1, "answer": "x", "derive": "exec"}]
    assert any("derive needs an answer" in problem for problem in authoring.judge_problems(entries, 1))
    assert authoring.judge_problems([{"id": "a", "points": 1, "answer": "x", "derive": "top_permissions"}], 1) == []


def test_a_review_note_is_read_field_by_field() -> None:
    note = {"bundle": "d", "claimed": "Version 3 is better than version 1 and is production.",
            "evidence": "gate_allowed failed: version 3 is tagged gate.verdict = fail.",
            "decision": " Reject ", "repair": "Rolled production back to version 1 through the history."}
    assert derive.apply("review_note_fields", note) == {
        "bundle": "D", "claimed": True, "evidence": True, "decision": "reject", "repair": True}
    vague = {**note, "evidence": "the numbers looked a bit off to me, honestly", "repair": "fixed"}
    assert derive.apply("review_note_fields", vague) == {
        "bundle": "D", "claimed": True, "evidence": False, "decision": "reject", "repair": False}
    with pytest.raises(derive.DeriveError, match="unknown keys"):
        derive.apply("review_note_fields", {**note, "score": 10})
    with pytest.raises(derive.DeriveError, match="must be a dict"):
        derive.apply("review_note_fields", "looks fine")


def test_pick_takes_one_part_of_what_was_derived() -> None:
    entry = {"id": "c", "what": "evidence", "points": 1, "answer": "note", "derive": "review_note_fields",
             "pick": ["evidence"]}
    note = {"bundle": "D", "evidence": "gate_allowed failed for version 3 of the model"}
    assert judge.judge(entry, {"c": {"value": note}}, {}, True).passed
    assert not judge.judge(entry, {"c": {"value": {**note, "evidence": "it looked wrong to me somehow"}}}, {}, True).passed
    assert any("pick needs derive" in p for p in authoring.judge_problems(
        [{"id": "a", "points": 1, "answer": "x", "pick": ["k"]}], 1))
