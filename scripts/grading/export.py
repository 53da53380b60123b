"""Export a student's answers from the kernel as plain data (runs *inside* the kernel).

The grader never trusts an object from the kernel: it asks the kernel for the value of each
answer expression a check declares, converted here to JSON (numbers, strings, booleans, None,
lists, dicts; sets become sorted lists; DataFrames ``{"columns", "index", "records"}``;
Series ``{"index", "values"}``; dataclasses dicts). Anything else is refused, so an object
whose ``__eq__`` always says yes cannot reach the grader. A student can of course change this
module in their kernel; what comes out is then still only an answer, judged like any other.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

MAX_ANSWER_CHARS = 200_000
MAX_DEPTH = 8


class NotPlainData(TypeError):
    """The answer is not a value the grader can judge (a function, a custom object, ...)."""


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data; exact types only, so subclasses cannot smuggle behaviour in."""
    if depth > MAX_DEPTH:
        raise NotPlainData("the answer is nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    module = getattr(kind, "__module__", "") or ""
    if module.startswith("numpy"):
        if hasattr(value, "tolist"):
            return plain(value.tolist(), depth + 1)
    if module.startswith("pandas"):
        name = kind.__name__
        if name == "DataFrame":
            return {
                "columns": plain([str(column) for column in value.columns], depth + 1),
                "index": plain(list(value.index), depth + 1),
                "records": plain(value.to_numpy().tolist(), depth + 1),
            }
        if name == "Series":
            return {"index": plain(list(value.index), depth + 1), "values": plain(value.tolist(), depth + 1)}
        if name == "Index":
            return plain(list(value), depth + 1)
    if kind in (list, tuple):
        return [plain(item, depth + 1) for item in value]
    if kind in (set, frozenset):
        return sorted((plain(item, depth + 1) for item in value), key=repr)
    if kind is dict:
        return {str(key): plain(item, depth + 1) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain(getattr(value, field.name), depth + 1) for field in dataclasses.fields(value)}
    raise NotPlainData(f"a {kind.__name__} is not plain data (numbers, text, lists, dicts, DataFrames)")


def letters(value: Any) -> list[str] | None:
    """A multiple-choice answer ({"A", "C"}, ["A", "C"] or "AC") as sorted letters; None if malformed."""
    if isinstance(value, str):
        value = [c for c in value if not c.isspace() and c != ","]
    if not isinstance(value, (set, frozenset, list, tuple)) or not all(isinstance(v, str) for v in value):
        return None
    return sorted({v.strip().upper() for v in value})


def dumps(namespace: dict[str, Any], expressions: dict[str, str]) -> str:
    """Evaluate each answer expression in the student's namespace; JSON of ``{name: {"value"|"error"}}``."""
    helpers = {"letters": letters}
    answers: dict[str, Any] = {}
    for name, expression in expressions.items():
        try:
            answers[name] = {"value": plain(eval(expression, namespace, dict(helpers)))}  # noqa: S307 - the student's own kernel
        except Exception as exc:  # the student's objects may be anything: report, never crash
            answers[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    text = json.dumps(answers)
    if len(text) > MAX_ANSWER_CHARS:
        return json.dumps({name: {"error": "the answers are too large to grade"} for name in expressions})
    return text
