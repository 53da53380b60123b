"""A promotion gate: composable checks that a candidate model must pass before it ships.

A **check** looks at the :class:`Evidence` gathered about a candidate (its evaluation
document, the baseline's, its signature, the model itself) and returns a
:class:`CheckResult`: pass or fail, a one-line reason, and details. A **gate**
(:func:`run_gate`) runs a list of checks and passes only if every check passed.

The gate **fails closed**. Anything that prevents a check from proving the candidate is at
least as good as the baseline is a failure with its reason, never a silent pass:

* a slice in the baseline that is missing from the candidate (or a candidate slice with no
  baseline to compare against);
* a metric that is missing, not a number, NaN or infinite;
* an empty evaluation set (``n == 0``, or no slices at all);
* a piece of evidence the check needs but that was not gathered (no signature, no model...);
* a check that raises an exception, or returns something that is not a :class:`CheckResult`;
* a gate with no checks at all.

**Small slices.** Accuracy on a handful of rows is too noisy to judge against a 0.02
tolerance, so :class:`SliceRegression` has a minimum slice size (``min_slice_size``,
default 30). A slice below it **fails** with the reason "too small to judge" unless the
policy explicitly sets ``allow_small_slices=True``, in which case it is *skipped with a
reason* that stays visible in the report (status ``skipped``), never silently dropped.

**Boundary.** A slice passes when ``candidate >= baseline - tolerance``: a drop exactly
equal to the tolerance passes, a hair more fails. Accuracies are recorded to 4 decimals,
so ``0.80 - 0.78`` is computed as ``0.020000000000000018``; comparisons therefore allow
:data:`EPSILON` (1e-9), far below the 1e-4 resolution of the recorded metrics and far
above floating-point error.

Typical use in a notebook::

    evidence = gate.collect_evidence("models:/churn-classifier/2", eval_csv, baseline)
    report = gate.run_gate(gate.default_checks(tolerance=0.02), evidence)
    report            # renders as a Markdown table; report.to_frame() for a DataFrame

From a shell: ``python -m scripts.mlops gate --candidate-uri models:/NAME/N --baseline
eval_baseline.json --data EVAL.csv`` (exit 0 pass, 2 fail, 1 unusable input) and
``python -m scripts.mlops baseline --model NAME --alias production --data EVAL.csv --out
eval_baseline.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence

from .errors import DataError, MlopsError

if TYPE_CHECKING:  # pandas and MLflow are imported lazily: `--help` should stay fast
    import pandas as pd

#: Slack for float comparisons (see the module docstring).
EPSILON = 1e-9
DEFAULT_METRIC = "accuracy"
DEFAULT_TOLERANCE = 0.02
DEFAULT_MIN_SLICE_SIZE = 30
DEFAULT_FLOOR = 0.75
DEFAULT_LATENCY_BUDGET_MS = 100.0
DEFAULT_LATENCY_CALLS = 50
#: Upper bound on single-record predictions one latency check may make.
MAX_LATENCY_CALLS = 1000
LATENCY_WARMUP_CALLS = 2

EXIT_PASS, EXIT_UNUSABLE, EXIT_FAIL = 0, 1, 2
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------
# Results and evidence
# --------------------------------------------------------------------------------------


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

    name: str

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

        rows = next((list(r.details.get("rows", [])) for r in self.results if r.name == SliceRegression.name), [])
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


# --------------------------------------------------------------------------------------
# Reading numbers out of evaluation documents (fail closed)
# --------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None when missing, non-numeric, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _describe_bad(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{value!r} (not a finite number)"


def _size(value: Any) -> int | None:
    """A row count as an int >= 0, or None when missing or malformed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if value < 0 or int(value) != value:
        return None
    return int(value)


def _buckets(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    buckets = document.get("buckets")
    return buckets if isinstance(buckets, Mapping) else None


def _require_number(name: str, value: float, low: float | None = None) -> float:
    number = _number(value)
    if number is None or (low is not None and number < low):
        bound = f" >= {low}" if low is not None else ""
        raise MlopsError(f"{name} must be a finite number{bound}, got {value!r}", f"pass a valid {name}.")
    return number


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricFloor:
    """The candidate's overall ``metric`` must be at least ``floor`` (on a non-empty set)."""

    floor: float = DEFAULT_FLOOR
    metric: str = DEFAULT_METRIC
    name: str = "metric_floor"

    def __post_init__(self) -> None:
        _require_number("floor", self.floor)

    def __call__(self, evidence: Evidence) -> CheckResult:
        if evidence.candidate is None:
            return CheckResult(self.name, False, evidence.missing("candidate", "candidate evaluation"))
        overall = evidence.candidate.get("overall")
        if not isinstance(overall, Mapping):
            return CheckResult(self.name, False, "the candidate evaluation has no 'overall' section")
        n = _size(overall.get("n"))
        if not n:
            return CheckResult(self.name, False, f"the candidate was evaluated on {overall.get('n')!r} rows: an empty "
                               "or unknown-sized evaluation set proves nothing", {"n": overall.get("n")})
        value = _number(overall.get(self.metric))
        details = {"metric": self.metric, "value": value, "floor": self.floor, "n": n}
        if value is None:
            return CheckResult(self.name, False, f"overall {self.metric} is {_describe_bad(overall.get(self.metric))}",
                               details)
        if value + EPSILON < self.floor:
            return CheckResult(self.name, False, f"overall {self.metric} {value:.4f} is below the floor {self.floor}",
                               details)
        return CheckResult(self.name, True, f"overall {self.metric} {value:.4f} >= floor {self.floor} (n={n})", details)


@dataclass(frozen=True)
class SliceRegression:
    """Every slice must satisfy ``candidate >= baseline - tolerance`` (see the module docstring).

    ``details["rows"]`` holds one row per slice: ``slice``, ``status`` (pass/fail/skipped),
    ``baseline``, ``candidate``, ``drop``, ``tolerance``, ``n`` and ``reason``.
    """

    tolerance: float = DEFAULT_TOLERANCE
    min_slice_size: int = DEFAULT_MIN_SLICE_SIZE
    allow_small_slices: bool = False
    metric: str = DEFAULT_METRIC
    name: str = "slice_regression"

    def __post_init__(self) -> None:
        _require_number("tolerance", self.tolerance, low=0.0)
        if isinstance(self.min_slice_size, bool) or not isinstance(self.min_slice_size, int) or self.min_slice_size < 1:
            raise MlopsError(f"min_slice_size must be a whole number >= 1, got {self.min_slice_size!r}",
                             "pass the smallest slice (in rows) whose accuracy you trust, e.g. 30.")

    def __call__(self, evidence: Evidence) -> CheckResult:
        if evidence.candidate is None:
            return CheckResult(self.name, False, evidence.missing("candidate", "candidate evaluation"))
        if evidence.baseline is None:
            return CheckResult(self.name, False, evidence.missing("baseline", "baseline"))
        base, cand = _buckets(evidence.baseline), _buckets(evidence.candidate)
        if base is None or cand is None:
            which = "baseline" if base is None else "candidate evaluation"
            return CheckResult(self.name, False, f"the {which} has no 'buckets' (per-slice metrics)")
        if not base:
            return CheckResult(self.name, False, "the baseline has no slices, so there is nothing to compare against")
        if not cand:
            return CheckResult(self.name, False,
                               "the candidate evaluation has no slices: was the evaluation set empty?")
        rows = [self._compare(str(name), base.get(name), cand.get(name)) for name in sorted(set(base) | set(cand))]
        failing = [row for row in rows if row["status"] == "fail"]
        skipped = [row for row in rows if row["status"] == "skipped"]
        details = {"rows": rows, "tolerance": self.tolerance, "min_slice_size": self.min_slice_size}
        if failing:
            shown = "; ".join(f"{row['slice']}: {row['reason']}" for row in failing)
            return CheckResult(self.name, False, f"{len(failing)} of {len(rows)} slices failed: {shown}", details)
        compared = [row for row in rows if row["status"] == "pass"]
        if not compared:
            return CheckResult(self.name, False, f"no slice has at least {self.min_slice_size} rows, so none could be "
                               "compared", details)
        worst = max(compared, key=lambda row: row["drop"])
        reason = (f"all {len(compared)} slices within {self.tolerance:g} of the baseline "
                  f"(largest drop: {worst['slice']} {worst['drop']:+.4f})")
        if skipped:
            reason += "; skipped as too small: " + ", ".join(f"{row['slice']} (n={row['n']})" for row in skipped)
        return CheckResult(self.name, True, reason, details)

    def _compare(self, name: str, base: Any, cand: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"slice": name, "status": "fail", "baseline": None, "candidate": None, "drop": None,
                               "tolerance": self.tolerance, "n": None, "reason": ""}
        if base is None:
            row["candidate"] = cand.get(self.metric) if isinstance(cand, Mapping) else None
            row["reason"] = "slice has no baseline to compare against"
            return row
        if cand is None:
            row["baseline"] = base.get(self.metric) if isinstance(base, Mapping) else None
            row["reason"] = "slice is missing from the candidate evaluation"
            return row
        if not isinstance(base, Mapping) or not isinstance(cand, Mapping):
            row["reason"] = "slice entry is not an object with the metric and n"
            return row
        b, c = _number(base.get(self.metric)), _number(cand.get(self.metric))
        row["baseline"], row["candidate"] = (b if b is not None else base.get(self.metric),
                                             c if c is not None else cand.get(self.metric))
        if b is None or c is None:
            side, value = ("baseline", base.get(self.metric)) if b is None else ("candidate", cand.get(self.metric))
            row["reason"] = f"{side} {self.metric} is {_describe_bad(value)}"
            return row
        sizes = [_size(base.get("n")), _size(cand.get("n"))]
        if None in sizes:
            row["reason"] = "slice size n is missing or invalid"
            return row
        n = min(s for s in sizes if s is not None)
        row["n"] = n
        row["drop"] = round(b - c, 10)
        if n < self.min_slice_size:
            row["reason"] = f"n={n} < min slice size {self.min_slice_size}: too small to judge"
            if self.allow_small_slices:
                row["status"] = "skipped"
            return row
        if b - c > self.tolerance + EPSILON:
            row["reason"] = f"dropped {b - c:.4f} > tolerance {self.tolerance:g} ({b:.4f} -> {c:.4f})"
            return row
        row["status"] = "pass"
        row["reason"] = f"{b:.4f} -> {c:.4f}"
        return row


def _label_set(labels: Any) -> set[str] | None:
    if not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
        return None
    return set(labels)


@dataclass(frozen=True)
class LabelCoverage:
    """The labels the candidate predicts must include every label the baseline predicts."""

    name: str = "label_coverage"

    def __call__(self, evidence: Evidence) -> CheckResult:
        if evidence.candidate is None:
            return CheckResult(self.name, False, evidence.missing("candidate", "candidate evaluation"))
        if evidence.baseline is None:
            return CheckResult(self.name, False, evidence.missing("baseline", "baseline"))
        new, base = _label_set(evidence.candidate.get("labels")), _label_set(evidence.baseline.get("labels"))
        if base is None or not base:
            return CheckResult(self.name, False, "the baseline records no 'labels'; regenerate it with "
                               "`python -m scripts.mlops baseline`")
        if new is None:
            return CheckResult(self.name, False, "the candidate evaluation records no 'labels' list")
        details = {"candidate": sorted(new), "baseline": sorted(base), "missing": sorted(base - new)}
        if not base <= new:
            shown_new = "(" + ", ".join(repr(label) for label in sorted(new)) + ")"
            shown_base = "{" + ", ".join(repr(label) for label in sorted(base)) + "}"
            return CheckResult(self.name, False, f"New labels set {shown_new} does not cover baseline {shown_base}",
                               details)
        return CheckResult(self.name, True, f"predicts every baseline label {sorted(base)}", details)


@dataclass(frozen=True)
class EvalSetMatch:
    """The candidate must have been evaluated on the very file the baseline was (same SHA-256)."""

    name: str = "eval_set_fingerprint"

    def __call__(self, evidence: Evidence) -> CheckResult:
        if evidence.candidate is None:
            return CheckResult(self.name, False, evidence.missing("candidate", "candidate evaluation"))
        if evidence.baseline is None:
            return CheckResult(self.name, False, evidence.missing("baseline", "baseline"))
        new, base = evidence.candidate.get("eval_set_hash"), evidence.baseline.get("eval_set_hash")
        details = {"candidate": new, "baseline": base}
        for side, value in (("baseline", base), ("candidate", new)):
            if not isinstance(value, str) or not _FINGERPRINT.match(value):
                return CheckResult(self.name, False, f"the {side} eval_set_hash {value!r} is not a sha256 fingerprint",
                                   details)
        if new != base:
            return CheckResult(self.name, False, f"evaluated on a different file ({new[:19]}...) than the baseline "
                               f"({base[:19]}...): the numbers are not comparable", details)
        return CheckResult(self.name, True, f"same evaluation set as the baseline ({base[:19]}...)", details)


def schema_columns(signature: Any) -> dict[str, str] | None:
    """``{column: type}`` from a ModelSignature or input Schema; None if not column-based."""
    schema = signature.inputs if hasattr(signature, "outputs") else signature  # ModelSignature or Schema
    specs = getattr(schema, "inputs", None)
    if schema is None or specs is None or getattr(schema, "is_tensor_spec", lambda: False)():
        return None
    columns: dict[str, str] = {}
    for spec in specs:
        name = getattr(spec, "name", None)
        if name is None:
            return None
        kind = getattr(spec, "type", None)
        columns[str(name)] = str(getattr(kind, "name", kind))
    return columns


@dataclass(frozen=True)
class SchemaMatch:
    """The candidate's input schema (column names and types) must equal production's."""

    name: str = "input_schema"

    def __call__(self, evidence: Evidence) -> CheckResult:
        if evidence.candidate_signature is None:
            return CheckResult(self.name, False, evidence.missing("candidate_signature", "candidate signature"))
        if evidence.production_signature is None:
            return CheckResult(self.name, False, evidence.missing("production_signature", "production signature"))
        new, prod = schema_columns(evidence.candidate_signature), schema_columns(evidence.production_signature)
        if new is None or prod is None:
            side = "candidate" if new is None else "production"
            return CheckResult(self.name, False, f"the {side} signature has no named input columns to compare")
        missing = sorted(set(prod) - set(new))
        extra = sorted(set(new) - set(prod))
        changed = sorted(f"{col} {prod[col]}->{new[col]}" for col in set(prod) & set(new) if prod[col] != new[col])
        details = {"missing": missing, "extra": extra, "changed": changed}
        problems = [f"{label}: {', '.join(items)}" for label, items in
                    (("missing columns", missing), ("new columns", extra), ("type changes", changed)) if items]
        if problems:
            return CheckResult(self.name, False, "input schema differs from production (" + "; ".join(problems) + ")",
                               details)
        return CheckResult(self.name, True, f"same {len(prod)} input columns and types as production", details)


@contextlib.contextmanager
def _quiet_schema_notes() -> Iterator[None]:
    """Silence MLflow's per-call schema notes (e.g. "extra inputs ... will be ignored") while timing.

    The same note is already shown once when the candidate is evaluated; repeating it for
    every timed call would bury the report.
    """
    logger = logging.getLogger("mlflow.models.utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class LatencyBudget:
    """p95 latency of single-record predictions must be within ``budget_ms``.

    Times ``calls`` predictions of one row each (cycling through ``evidence.sample``), after
    a couple of untimed warm-up calls. ``calls`` is bounded by :data:`MAX_LATENCY_CALLS`.
    """

    budget_ms: float = DEFAULT_LATENCY_BUDGET_MS
    calls: int = DEFAULT_LATENCY_CALLS
    name: str = "latency_p95"

    def __post_init__(self) -> None:
        _require_number("latency budget (ms)", self.budget_ms, low=0.0)
        if isinstance(self.calls, bool) or not isinstance(self.calls, int) or not 1 <= self.calls <= MAX_LATENCY_CALLS:
            raise MlopsError(f"latency calls must be a whole number from 1 to {MAX_LATENCY_CALLS}, got {self.calls!r}",
                             "20-100 single-record calls give a stable p95 in a few seconds.")

    def __call__(self, evidence: Evidence) -> CheckResult:
        import numpy as np

        if evidence.model is None:
            return CheckResult(self.name, False, evidence.missing("model", "candidate model"))
        if evidence.sample is None or len(evidence.sample) == 0:
            return CheckResult(self.name, False, evidence.missing("sample", "sample of input rows"))
        sample = evidence.sample
        timings = []
        with _quiet_schema_notes():
            for i in range(LATENCY_WARMUP_CALLS):
                evidence.model.predict(sample.iloc[[i % len(sample)]])
            for i in range(self.calls):
                record = sample.iloc[[i % len(sample)]]
                start = time.perf_counter()
                evidence.model.predict(record)
                timings.append((time.perf_counter() - start) * 1000.0)
        p50, p95 = (float(np.percentile(timings, q)) for q in (50, 95))
        details = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "max_ms": round(max(timings), 2),
                   "calls": self.calls, "budget_ms": self.budget_ms}
        measured, calls = f"p95 latency {p95:.1f} ms", f"({self.calls} single-record calls)"
        if p95 > self.budget_ms:
            reason = f"{measured} exceeds the budget of {self.budget_ms:g} ms {calls}"
            return CheckResult(self.name, False, reason, details)
        return CheckResult(self.name, True, f"{measured} within {self.budget_ms:g} ms {calls}", details)


def default_checks(
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    min_slice_size: int = DEFAULT_MIN_SLICE_SIZE,
    allow_small_slices: bool = False,
    floor: float = DEFAULT_FLOOR,
    latency_budget_ms: float = DEFAULT_LATENCY_BUDGET_MS,
    latency_calls: int = DEFAULT_LATENCY_CALLS,
) -> list[Check]:
    """The project's promotion policy: floor, slices, labels, eval set, schema, latency."""
    return [
        MetricFloor(floor=floor),
        SliceRegression(tolerance=tolerance, min_slice_size=min_slice_size, allow_small_slices=allow_small_slices),
        LabelCoverage(),
        EvalSetMatch(),
        SchemaMatch(),
        LatencyBudget(budget_ms=latency_budget_ms, calls=latency_calls),
    ]


# --------------------------------------------------------------------------------------
# Evaluation documents on disk
# --------------------------------------------------------------------------------------

REQUIRED_KEYS: tuple[str, ...] = ("eval_set_hash", "overall", "buckets")


def load_evaluation(path: str | Path, role: str = "evaluation") -> dict[str, Any]:
    """Read an evaluation document (baseline or candidate); raise MlopsError if unusable.

    Only the document's *shape* is checked here (a JSON object with ``eval_set_hash``,
    ``overall`` and ``buckets``); bad numbers inside it are the checks' business and fail them.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"the {role} file {path} does not exist",
                        "check the path; produce a baseline with `python -m scripts.mlops baseline` and a candidate "
                        "evaluation with `python -m scripts.mlops evaluate --out FILE`.")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"the {role} file {path} is not valid JSON: {exc}",
                        "regenerate it with the command that produced it; do not edit it by hand.") from None
    if not isinstance(document, dict):
        raise DataError(f"the {role} file {path} holds a JSON {type(document).__name__}, not an object",
                        "pass an evaluation document: {\"eval_set_hash\": ..., \"overall\": ..., \"buckets\": ...}.")
    missing = [key for key in REQUIRED_KEYS if key not in document]
    if missing:
        raise DataError(f"the {role} file {path} is missing key(s) {missing}; found {sorted(document)}",
                        f"an evaluation document needs {list(REQUIRED_KEYS)}; regenerate it.")
    for key in ("overall", "buckets"):
        if not isinstance(document[key], dict):
            raise DataError(f"the {role} file {path}: {key!r} must be an object, got {type(document[key]).__name__}",
                            "regenerate the file.")
    return document


def slice_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of per-slice comparison rows (baseline, candidate, drop, tolerance)."""
    lines = ["| bucket | baseline | candidate | drop | tolerance | why |", "|---|---|---|---|---|---|"]
    for row in rows:
        drop = "-" if row.get("drop") is None else _fmt(row["drop"], signed=True)
        cells = [row["slice"], _fmt(row.get("baseline")), _fmt(row.get("candidate")), drop,
                 f"{row.get('tolerance'):g}", row.get("reason", "")]
        lines.append("| " + " | ".join(markdown_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _fmt(value: Any, *, signed: bool = False) -> str:
    if value is None:
        return "missing"
    number = _number(value)
    if number is None:
        return _describe_bad(value)
    return f"{number:+.4f}" if signed else f"{number:.4f}"


def markdown_cell(value: Any) -> str:
    """``value`` as text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------------------
# Gathering evidence from the registry, and baselines
# --------------------------------------------------------------------------------------


def _parse_registry_uri(uri: str) -> tuple[str | None, int | None]:
    """``(name, version)`` of ``models:/NAME/VERSION``; ``(name, None)`` for aliases; else Nones."""
    if not uri.startswith("models:/"):
        return None, None
    target = uri[len("models:/"):]
    if "@" in target:
        return target.split("@", 1)[0], None
    name, _, version = target.rpartition("/")
    return (name, int(version)) if name and version.isdigit() else (target, None)


def check_model_uri(uri: str) -> None:
    """Raise RegistryError (listing what exists) if a ``models:/`` URI does not resolve."""
    from .registry import check_model_uri as check

    check(uri)


def _signature(uri: str) -> Any:
    import mlflow

    return mlflow.models.get_model_info(uri).signature


def collect_evidence(
    candidate_uri: str,
    data_path: str | Path,
    baseline: Mapping[str, Any] | None,
    *,
    production_uri: str | None = None,
    sample_size: int = 50,
) -> Evidence:
    """Load the candidate, evaluate it on ``data_path`` and gather everything the checks read.

    Unusable input raises :class:`MlopsError` (missing data file, unknown model URI). A
    candidate that cannot be loaded or cannot predict does not raise: the evidence records
    the problem and the checks that need it fail with it. ``production_uri`` defaults to
    ``models:/<baseline model>/<baseline version>``, the version the baseline describes.
    """
    import mlflow

    from . import data, evaluate

    frame = data.load(data_path)  # unusable data is the caller's problem: raise
    check_model_uri(candidate_uri)
    if production_uri is not None:
        check_model_uri(production_uri)
    elif baseline is not None and baseline.get("model") and baseline.get("version") is not None:
        production_uri = f"models:/{baseline['model']}/{baseline['version']}"

    evidence = Evidence(baseline=baseline, sample=data.features(frame).head(sample_size))
    name, version = _parse_registry_uri(candidate_uri)
    try:
        evidence.model = mlflow.pyfunc.load_model(candidate_uri)
        evidence.candidate = evaluate.evaluate_file(evidence.model, data_path, model=name, version=version,
                                                    model_uri=candidate_uri)
    except Exception as exc:  # noqa: BLE001 - a broken candidate fails the gate, it does not crash it
        evidence.problems["candidate"] = f"the candidate could not be evaluated: {type(exc).__name__}: {exc}"
        evidence.problems.setdefault("model", evidence.problems["candidate"])
    try:
        evidence.candidate_signature = _signature(candidate_uri)
        if evidence.candidate_signature is None:
            evidence.problems["candidate_signature"] = f"{candidate_uri} was logged without a signature"
    except Exception as exc:  # noqa: BLE001
        evidence.problems["candidate_signature"] = f"cannot read the signature of {candidate_uri}: {exc}"
    if production_uri is None:
        evidence.problems["production_signature"] = ("no production model to compare with: the baseline names no "
                                                     "model/version and no production URI was given")
    else:
        try:
            evidence.production_signature = _signature(production_uri)
            if evidence.production_signature is None:
                evidence.problems["production_signature"] = f"{production_uri} was logged without a signature"
        except Exception as exc:  # noqa: BLE001
            evidence.problems["production_signature"] = (f"cannot read the signature of {production_uri} ({exc}); "
                                                         "pass --production-uri models:/NAME@production")
    return evidence


def gate_candidate(
    candidate_uri: str,
    data_path: str | Path,
    baseline: Mapping[str, Any],
    *,
    checks: Sequence[Check] | None = None,
    production_uri: str | None = None,
) -> GateReport:
    """Collect evidence for ``candidate_uri`` and run ``checks`` (default: :func:`default_checks`)."""
    evidence = collect_evidence(candidate_uri, data_path, baseline, production_uri=production_uri)
    return run_gate(default_checks() if checks is None else checks, evidence)


def make_baseline(model: str, alias: str, data_path: str | Path) -> dict[str, Any]:
    """The evaluation document of the version ``models:/model@alias`` points at, on ``data_path``."""
    import mlflow

    from . import evaluate, registry

    info = registry.version_for_alias(model, alias)
    loaded = mlflow.pyfunc.load_model(info.uri)
    document = evaluate.evaluate_file(loaded, data_path, model=model, version=info.version, alias=alias)
    # NumPy string keys print fine but compare oddly; make the document plain JSON data.
    return json.loads(json.dumps(document))


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _exit_1_on_usage_error(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make a sub-command's usage errors exit 1 (unusable input): status 2 means "gate failed"."""

    def error(self: argparse.ArgumentParser, message: str) -> None:
        self.print_usage(sys.stderr)
        self.exit(EXIT_UNUSABLE, f"{self.prog}: error: {message}\n")

    parser.error = types.MethodType(error, parser)  # type: ignore[method-assign]
    return parser


def cmd_gate(args: argparse.Namespace) -> int:
    from . import evaluate
    from .workspace import open_workspace

    baseline = load_evaluation(args.baseline, "baseline")
    checks = default_checks(
        tolerance=args.tolerance,
        min_slice_size=args.min_slice_size,
        allow_small_slices=args.allow_small_slices,
        floor=args.floor,
        latency_budget_ms=args.latency_budget_ms,
        latency_calls=args.latency_calls,
    )
    open_workspace(args.workspace, fresh=False)
    evidence = collect_evidence(args.candidate_uri, args.data, baseline, production_uri=args.production_uri)
    if args.out and evidence.candidate is not None:
        evaluate.write_json(dict(evidence.candidate), args.out)
    report = run_gate(checks, evidence)
    print(f"{report.summary()}  candidate: {args.candidate_uri}\n")
    print(report.to_markdown())
    try:
        rows = [row for row in report[SliceRegression.name].details.get("rows", []) if row["status"] != "pass"]
    except KeyError:
        rows = []
    if rows:
        print("\nSlices that did not pass:\n")
        print(slice_markdown(rows))
    return EXIT_PASS if report.passed else EXIT_FAIL


def cmd_baseline(args: argparse.Namespace) -> int:
    from . import evaluate
    from .workspace import open_workspace

    open_workspace(args.workspace, fresh=False)
    document = make_baseline(args.model, args.alias, args.data)
    evaluate.write_json(document, args.out)
    print(f"wrote {args.out}: {args.model} version {document['version']} (@{args.alias}), "
          f"accuracy {document['overall']['accuracy']:.4f} on {document['overall']['n']} rows")
    return EXIT_PASS


def add_commands(commands: Any) -> None:
    """Register the ``gate`` and ``baseline`` sub-commands on the toolkit's CLI."""
    p = _exit_1_on_usage_error(commands.add_parser(
        "gate", help="run the promotion gate on a candidate (exit 0 pass, 2 fail, 1 unusable input)"))
    p.add_argument("--candidate-uri", required=True, help="models:/NAME/VERSION or models:/NAME@ALIAS")
    p.add_argument("--baseline", required=True, help="baseline evaluation JSON (e.g. eval_baseline.json)")
    p.add_argument("--data", required=True, help="the frozen evaluation CSV the baseline was computed on")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="allowed per-slice drop (default 0.02)")
    p.add_argument("--min-slice-size", type=int, default=DEFAULT_MIN_SLICE_SIZE,
                   help=f"slices with fewer rows fail as too small to judge (default {DEFAULT_MIN_SLICE_SIZE})")
    p.add_argument("--allow-small-slices", action="store_true", help="skip (with a reason) small slices instead")
    p.add_argument("--floor", type=float, default=DEFAULT_FLOOR, help="minimum overall accuracy (default 0.75)")
    p.add_argument("--latency-budget-ms", type=float, default=DEFAULT_LATENCY_BUDGET_MS,
                   help="p95 single-record latency budget (default 100 ms)")
    p.add_argument("--latency-calls", type=int, default=DEFAULT_LATENCY_CALLS,
                   help=f"single-record calls to time (default {DEFAULT_LATENCY_CALLS}, max {MAX_LATENCY_CALLS})")
    p.add_argument("--production-uri", help="model whose input schema the candidate must match "
                   "(default: the baseline's model and version)")
    p.add_argument("--out", help="also write the candidate's evaluation JSON here")
    p.set_defaults(func=cmd_gate)

    p = _exit_1_on_usage_error(commands.add_parser(
        "baseline", help="write the evaluation baseline of the version an alias points at"))
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--alias", default="production", help="alias to resolve (default: production)")
    p.add_argument("--data", required=True, help="the frozen evaluation CSV")
    p.add_argument("--out", default="eval_baseline.json", help="where to write it (default: eval_baseline.json)")
    p.set_defaults(func=cmd_baseline)
