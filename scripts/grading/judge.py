"""Judge a submission in the grader's own process: answers and workspace facts against a trusted key.

A check cell declares its judgments in ``metadata.lab.judge`` (see the instructors' page)::

    {"id": "a", "what": "hardest segment", "points": 2, "answer": "hardest_slice", "hint": "..."}
    {"id": "b", "what": "alias champion", "points": 2, "fact": ["churn-classifier", "aliases", "champion"]}

* ``answer`` is a Python expression the grader asks the student's kernel for, right after the
  check cell ran, as plain data (:mod:`scripts.grading.export`); with ``"derive": NAME`` the
  grader first computes :func:`scripts.grading.derive.apply` of it in its own process (for text
  answers such as YAML that many spellings can express), and ``"pick": [keys]`` takes one part
  of the result;
* ``fact`` is a path into the facts the grader reads from the workspace after the kernel has
  exited (:mod:`scripts.grading.probe`);
* the expected value is the one recorded from the reference solution's run
  (``manifests/<lab>.expected.json``, :mod:`scripts.grading.record`), unless the entry gives
  ``expect`` itself; ``tol`` compares numbers (also inside lists and dicts) within a tolerance;
  ``"op": "exists"`` only asks for the fact to be present; ``"op": "includes"`` asks a dict
  for the expected keys and values and ignores other keys (e.g. versions from a learner's
  extra tries).

Nothing the kernel prints or publishes is consulted here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MISSING = object()
DEFAULT_TOL = 1e-9


@dataclass(frozen=True)
class Verdict:
    """One judgment's outcome."""

    id: str
    passed: bool
    points: float
    earned: float
    message: str


def lookup(data: Any, path: list[Any]) -> Any:
    """``data[p0][p1]...`` over dicts (string keys) and lists (integer indexes); MISSING if absent."""
    for key in path:
        if isinstance(data, dict) and str(key) in data:
            data = data[str(key)]
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return MISSING
    return data


def same(found: Any, expected: Any, tol: float = DEFAULT_TOL) -> bool:
    """Equality of plain data, numbers within ``tol`` (booleans are not numbers)."""
    if isinstance(expected, bool) or isinstance(found, bool):
        return type(found) is type(expected) and found == expected
    if isinstance(expected, (int, float)) and isinstance(found, (int, float)):
        return math.isfinite(found) and abs(float(found) - float(expected)) <= tol
    if isinstance(expected, list) and isinstance(found, list):
        return len(found) == len(expected) and all(same(f, e, tol) for f, e in zip(found, expected, strict=True))
    if isinstance(expected, dict) and isinstance(found, dict):
        return found.keys() == expected.keys() and all(same(found[k], expected[k], tol) for k in expected)
    return type(found) is type(expected) and found == expected


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def observed(entry: dict[str, Any], answers: dict[str, Any], facts: dict[str, Any]) -> tuple[Any, str | None]:
    """What the submission gives for one judgment: (value, None) or (MISSING, why)."""
    if "fact" in entry:
        value = lookup(facts, list(entry["fact"]))
        return (value, None) if value is not MISSING else (MISSING, "not found in your workspace's registry")
    found = answers.get(entry["id"])
    if not isinstance(found, dict):
        return MISSING, "the cells before this check did not run to the end"
    if "error" in found:
        return MISSING, str(found["error"])
    if "derive" in entry:  # computed here, in the grader's process, from the exported plain value
        from .derive import DeriveError, apply

        try:
            derived = apply(str(entry["derive"]), found.get("value"))
        except DeriveError as exc:
            return MISSING, str(exc)
        if "pick" in entry:  # one part of what was derived (e.g. one field of a review note)
            derived = lookup(derived, list(entry["pick"]))
            if derived is MISSING:
                return MISSING, f"nothing at {entry['pick']} in what was read from your answer"
        return derived, None
    return found.get("value"), None


def judge(entry: dict[str, Any], answers: dict[str, Any], facts: dict[str, Any], expected: Any) -> Verdict:
    """Judge one declared entry; ``expected`` is the trusted value (recorded or declared)."""
    points = float(entry["points"])
    what = entry.get("what", entry["id"])
    hint = f" — hint: {entry['hint']}" if entry.get("hint") else ""
    value, why = observed(entry, answers, facts)
    if value is MISSING:
        return Verdict(entry["id"], False, points, 0.0, f"{what}: {why}{hint}")
    if entry.get("op") == "exists":
        return Verdict(entry["id"], True, points, points, f"{what}: present")
    if expected is MISSING:
        return Verdict(entry["id"], False, points, 0.0, f"{what}: no expected value recorded (tell your instructor)")
    if entry.get("op") == "includes" and isinstance(expected, dict) and isinstance(value, dict):
        value = {key: value[key] for key in expected if key in value}  # extra keys (earlier tries) are allowed
    if same(value, expected, float(entry.get("tol", DEFAULT_TOL))):
        return Verdict(entry["id"], True, points, points, f"{what} is {_short(value)}")
    shown = "" if entry.get("secret") else f"expected {_short(expected)}, "
    return Verdict(entry["id"], False, points, 0.0, f"{what}: {shown}found {_short(value)}{hint}")
