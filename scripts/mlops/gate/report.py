"""What a gate says: one :class:`CheckResult` per check, gathered into a :class:`GateReport`.

A **check** looks at the :class:`Evidence` gathered about a candidate (its evaluation
document, the baseline's, its signature, the model itself) and returns a
:class:`CheckResult`: pass or fail, a one-line reason, and details. :func:`run_gate` runs a
list of checks and passes only if every check passed; it **fails closed**: a check that
raises or returns something else is a failure, and a gate with no checks fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pandas is imported lazily: `--help` should stay fast
    import pandas as pd

#: The name of the per-slice check, whose rows :meth:`GateReport.slices` shows.
SLICE_CHECK = "slice_regression"


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check: ``passed``, a one-line ``reason`` and ``details`` for tables."""

    name: str
    passed: bool
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "FAIL"


@dataclass
class Evidence:
    """Everything gathered about one candidate; each check reads the parts it needs.

    ``candidate`` and ``baseline`` are evaluation documents (see :mod:`scripts.mlops.evaluate`).
    ``model`` answers ``predict(frame)``; ``sample`` holds feature rows for latency timing.
    Signatures are MLflow ``ModelSignature`` objects (or their input ``Schema``).
    ``problems`` says why a piece is missing (e.g. the candidate failed to predict), so a
    check that needs it can fail with the real cause.
    """

    candidate: Mapping[str, Any] | None = None
    baseline: Mapping[str, Any] | None = None
    model: Any = None
    sample: "pd.DataFrame | None" = None
    candidate_signature: Any = None
    production_signature: Any = None
    problems: dict[str, str] = field(default_factory=dict)

    def missing(self, part: str, what: str) -> str:
        """The reason a check gives when ``part`` of the evidence is absent."""
        cause = self.problems.get(part)
        return f"no {what} to check" + (f": {cause}" if cause else " (it was not gathered)")


class Check(Protocol):
    """Anything with a ``name`` that maps :class:`Evidence` to a :class:`CheckResult`."""

    @property
    def name(self) -> str: ...

    def __call__(self, evidence: Evidence) -> CheckResult: ...


@dataclass(frozen=True)
class GateReport:
    """The results of every check; the gate passed only if there was at least one and all passed."""

    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(result.passed for result in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [result for result in self.results if not result.passed]

    def failed_names(self) -> set[str]:
        return {result.name for result in self.failed}

    def __getitem__(self, name: str) -> CheckResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no check named {name!r}; checks: {[r.name for r in self.results]}")

    def summary(self) -> str:
        if self.passed:
            return f"Gate PASSED: all {len(self.results)} checks passed."
        names = ", ".join(result.name for result in self.failed)
        return f"Gate FAILED: {len(self.failed)} of {len(self.results)} checks failed ({names})."

    def to_frame(self) -> "pd.DataFrame":
        """One row per check: verdict and reason (for notebooks)."""
        import pandas as pd

        rows = [{"check": r.name, "verdict": r.verdict, "reason": r.reason} for r in self.results]
        return pd.DataFrame(rows, columns=["check", "verdict", "reason"]).set_index("check")

    def slices(self) -> "pd.DataFrame":
        """The per-slice comparison rows of the slice-regression check, as a DataFrame."""
        import pandas as pd

        rows = next((list(r.details.get("rows", [])) for r in self.results if r.name == SLICE_CHECK), [])
        columns = ["slice", "status", "baseline", "candidate", "drop", "tolerance", "n", "reason"]
        return pd.DataFrame(rows, columns=columns).set_index("slice")

    def to_markdown(self) -> str:
        lines = ["| check | verdict | reason |", "|---|---|---|"]
        for result in self.results:
            verdict = "pass" if result.passed else "**FAIL**"
            lines.append(f"| {markdown_cell(result.name)} | {verdict} | {markdown_cell(result.reason)} |")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:  # Jupyter renders the report as a table
        return f"**{self.summary()}**\n\n{self.to_markdown()}"


def run_gate(checks: Sequence[Check | Callable[[Evidence], CheckResult]], evidence: Evidence) -> GateReport:
    """Run every check (all of them, even after a failure) and collect the results.

    A check that raises, or returns anything but a :class:`CheckResult`, is recorded as a
    failure with the exception as its reason. A gate without checks fails.
    """
    if not checks:
        return GateReport((CheckResult("gate", False, "the gate has no checks, so nothing was verified"),))
    results = []
    for check in checks:
        name = str(getattr(check, "name", getattr(check, "__name__", type(check).__name__)))
        try:
            result = check(evidence)
        except Exception as exc:  # noqa: BLE001 - fail closed on any error inside a check
            result = CheckResult(name, False, f"the check raised {type(exc).__name__}: {exc}", {"error": repr(exc)})
        if not isinstance(result, CheckResult):
            result = CheckResult(name, False, f"the check returned {type(result).__name__}, not a CheckResult")
        results.append(result)
    return GateReport(tuple(results))


# --- numbers and Markdown, shared by the checks and the reports ---------------------------


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None when missing, non-numeric, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def describe_bad(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{value!r} (not a finite number)"


def slice_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of per-slice comparison rows (baseline, candidate, drop, tolerance)."""
    lines = ["| bucket | baseline | candidate | drop | tolerance | why |", "|---|---|---|---|---|---|"]
    for row in rows:
        drop = "-" if row.get("drop") is None else _fmt(row["drop"], signed=True)
        cells = [
            row["slice"],
            _fmt(row.get("baseline")),
            _fmt(row.get("candidate")),
            drop,
            f"{row.get('tolerance'):g}",
            row.get("reason", ""),
        ]
        lines.append("| " + " | ".join(markdown_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _fmt(value: Any, *, signed: bool = False) -> str:
    if value is None:
        return "missing"
    number = finite_number(value)
    if number is None:
        return describe_bad(value)
    return f"{number:+.4f}" if signed else f"{number:.4f}"


def markdown_cell(value: Any) -> str:
    """``value`` as text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")
