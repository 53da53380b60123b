"""Trusted derivations: what the grader computes itself from an exported answer before judging it.

Some answers are text that many equivalent spellings can express — a YAML block, a GitHub
expression. Comparing the text with the reference would fail correct answers, and letting the
student's kernel compute a verdict would let the kernel decide. So a judgment may declare
``"derive": NAME``: the grader takes the exported plain value (a string) and runs the function
``NAME`` below on it, *in the grader's own process*, then compares the result with the value
recorded from the reference solution.

The functions only parse: YAML with a safe loader that refuses anchors and aliases, expressions
with the offline runner's strict subset of GitHub's expression language. Nothing from the answer
is executed, imported or written to disk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MAX_TEXT = 10_000
MODEL = "churn-classifier"
# Expressions GitHub allows in a concurrency group whose value is the same for every run of
# this workflow; anything else (the branch, the pull request, the run) splits the group.
_CONSTANT_EXPRESSIONS = re.compile(r"\$\{\{\s*(github\.workflow|vars\.[A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class DeriveError(ValueError):
    """The answer cannot be read; the message says why, in the student's terms."""


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise DeriveError(f"{what} must be text (a string), found {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise DeriveError(f"{what} is longer than {MAX_TEXT} characters")
    return value


def _yaml(value: Any) -> dict[str, Any]:
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("anchors and aliases (*name) are not used in these blocks")
            return super().compose_node(parent, index)

    text = _text(value, "the hardening")
    try:
        document = yaml.load(text, Loader=NoAliases)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise DeriveError(f"the hardening is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise DeriveError("the hardening must be a YAML mapping with `permissions:` and `concurrency:`")
    return document


def top_permissions(value: Any) -> Any:
    """The workflow-level ``permissions`` as written ({} grants nothing); "missing" if absent."""
    document = _yaml(value)
    if "permissions" not in document:
        return "missing"
    found = document["permissions"]
    if found is None:
        return "empty value (YAML null)"
    return found if isinstance(found, (dict, str)) else repr(found)


def concurrency_scope(value: Any) -> str:
    """Who shares the concurrency group: "one per model", "one for all models", "varies per run"
    (the group holds an expression of the branch, pull request or run), or "missing"."""
    document = _yaml(value)
    found = document.get("concurrency")
    if found is None:
        return "missing"
    group = found.get("group") if isinstance(found, dict) else found
    if not isinstance(group, str) or not group.strip():
        return "missing"
    constant = _CONSTANT_EXPRESSIONS.sub("", group)
    if "${{" in constant:
        return "varies per run"
    return "one per model" if MODEL in group else "one for all models"


def cancel_in_progress(value: Any) -> Any:
    """The ``cancel-in-progress`` setting (GitHub's default is false); "varies" for an expression."""
    document = _yaml(value)
    found = document.get("concurrency")
    if not isinstance(found, dict):
        return False if found is not None else "missing"
    setting = found.get("cancel-in-progress", False)
    if isinstance(setting, bool):
        return setting
    return "varies" if isinstance(setting, str) and "${{" in setting else repr(setting)


def promote_truth_table(value: Any) -> list[Any]:
    """Whether the promote step runs, for each result of the gate job (success, failure,
    cancelled, skipped), read by the offline runner's own expression reader."""
    from scripts.mlops import deploy
    from scripts.mlops.errors import MlopsError

    try:
        return list(deploy.promote_truth_table(_text(value, "promote_if")))
    except MlopsError as exc:
        raise DeriveError(f"promote_if cannot be evaluated: {str(exc).splitlines()[0]}") from None


def lint_findings(value: Any) -> list[str]:
    """What the linters report on the real workflow with this hardening spliced in, as sorted
    ``tool:rule`` names without duplicates (the runner's checks, actionlint, zizmor --offline);
    [] is a clean file."""
    import tempfile
    from pathlib import Path

    from scripts.mlops import deploy
    from scripts.mlops.errors import MlopsError

    _yaml(value)
    try:
        text = deploy.workflow_with(_text(value, "the hardening"))
    except MlopsError as exc:
        raise DeriveError(str(exc).splitlines()[0]) from None
    with tempfile.TemporaryDirectory(prefix="derive-") as scratch:
        path = Path(scratch) / "deploy-gate.yml"
        path.write_text(text)
        return sorted({f"{finding.tool}:{finding.rule}" for finding in deploy.lint(path)})


REVIEW_FIELDS = ("bundle", "claimed", "evidence", "decision", "repair")
MIN_TEXT = 20


def review_note_fields(value: Any) -> dict[str, Any]:
    """Which required fields of a Lab 06 review note are filled in properly.

    ``bundle`` and ``decision`` are returned as written (normalised); ``claimed``, ``evidence`` and
    ``repair`` as booleans: a sentence of at least 20 characters, and for ``evidence`` one that
    names an audit check or a bundle file, so it points at evidence rather than an impression.
    """
    from scripts.mlops import bundle
    from scripts.mlops.audit import QUESTIONS

    if not isinstance(value, dict):
        raise DeriveError(f"the review note must be a dict with the keys {list(REVIEW_FIELDS)}")
    unknown = sorted(set(value) - set(REVIEW_FIELDS))
    if unknown:
        raise DeriveError(f"the review note has unknown keys {unknown}; use {list(REVIEW_FIELDS)}")

    def sentence(key: str) -> bool:
        text = value.get(key)
        return isinstance(text, str) and len(text.strip()) >= MIN_TEXT and len(text) <= MAX_TEXT

    names = [*QUESTIONS, *bundle.EVIDENCE_FILES, bundle.MANIFEST, "gate.verdict"]
    evidence = value.get("evidence")
    decision = value.get("decision")
    return {
        "bundle": str(value.get("bundle", "")).strip().upper()[:20],
        "claimed": sentence("claimed"),
        "evidence": sentence("evidence") and any(name in str(evidence) for name in names),
        "decision": decision.strip().lower()[:20] if isinstance(decision, str) else None,
        "repair": sentence("repair"),
    }


DERIVATIONS: dict[str, Callable[[Any], Any]] = {
    "top_permissions": top_permissions,
    "concurrency_scope": concurrency_scope,
    "cancel_in_progress": cancel_in_progress,
    "promote_truth_table": promote_truth_table,
    "lint_findings": lint_findings,
    "review_note_fields": review_note_fields,
}


def apply(name: str, value: Any) -> Any:
    """``DERIVATIONS[name](value)``; raises DeriveError with a message for the student."""
    try:
        function = DERIVATIONS[name]
    except KeyError:
        raise DeriveError(f"the grader has no derivation {name!r} (tell your instructor)") from None
    return function(value)
