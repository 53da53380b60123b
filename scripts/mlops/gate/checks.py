"""The gate's checks: small, composable, and each failing closed.

Anything that prevents a check from proving the candidate is at least as good as the
baseline is a failure with its reason, never a silent pass: a slice in the baseline that is
missing from the candidate (or a candidate slice with no baseline), a metric that is
missing, not a number, NaN or infinite, an empty evaluation set, or a piece of evidence the
check needs but that was not gathered.

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
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MlopsError
from .report import SLICE_CHECK, Check, CheckResult, Evidence, describe_bad, finite_number

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
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")


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
    number = finite_number(value)
    if number is None or (low is not None and number < low):
        bound = f" >= {low}" if low is not None else ""
        raise MlopsError(f"{name} must be a finite number{bound}, got {value!r}", f"pass a valid {name}.")
    return number


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
            return CheckResult(
                self.name,
                False,
                f"the candidate was evaluated on {overall.get('n')!r} rows: an empty "
                "or unknown-sized evaluation set proves nothing",
                {"n": overall.get("n")},
            )
        value = finite_number(overall.get(self.metric))
        details = {"metric": self.metric, "value": value, "floor": self.floor, "n": n}
        if value is None:
            return CheckResult(
                self.name, False, f"overall {self.metric} is {describe_bad(overall.get(self.metric))}", details
            )
        if value + EPSILON < self.floor:
            return CheckResult(
                self.name, False, f"overall {self.metric} {value:.4f} is below the floor {self.floor}", details
            )
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
    name: str = SLICE_CHECK

    def __post_init__(self) -> None:
        _require_number("tolerance", self.tolerance, low=0.0)
        if isinstance(self.min_slice_size, bool) or not isinstance(self.min_slice_size, int) or self.min_slice_size < 1:
            raise MlopsError(
                f"min_slice_size must be a whole number >= 1, got {self.min_slice_size!r}",
                "pass the smallest slice (in rows) whose accuracy you trust, e.g. 30.",
            )

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
            return CheckResult(
                self.name, False, "the candidate evaluation has no slices: was the evaluation set empty?"
            )
        rows = [self._compare(str(name), base.get(name), cand.get(name)) for name in sorted(set(base) | set(cand))]
        failing = [row for row in rows if row["status"] == "fail"]
        skipped = [row for row in rows if row["status"] == "skipped"]
        details = {"rows": rows, "tolerance": self.tolerance, "min_slice_size": self.min_slice_size}
        if failing:
            shown = "; ".join(f"{row['slice']}: {row['reason']}" for row in failing)
            return CheckResult(self.name, False, f"{len(failing)} of {len(rows)} slices failed: {shown}", details)
        compared = [row for row in rows if row["status"] == "pass"]
        if not compared:
            return CheckResult(
                self.name,
                False,
                f"no slice has at least {self.min_slice_size} rows, so none could be compared",
                details,
            )
        worst = max(compared, key=lambda row: row["drop"])
        reason = (
            f"all {len(compared)} slices within {self.tolerance:g} of the baseline "
            f"(largest drop: {worst['slice']} {worst['drop']:+.4f})"
        )
        if skipped:
            reason += "; skipped as too small: " + ", ".join(f"{row['slice']} (n={row['n']})" for row in skipped)
        return CheckResult(self.name, True, reason, details)

    def _compare(self, name: str, base: Any, cand: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "slice": name,
            "status": "fail",
            "baseline": None,
            "candidate": None,
            "drop": None,
            "tolerance": self.tolerance,
            "n": None,
            "reason": "",
        }
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
        b, c = finite_number(base.get(self.metric)), finite_number(cand.get(self.metric))
        row["baseline"], row["candidate"] = (
            b if b is not None else base.get(self.metric),
            c if c is not None else cand.get(self.metric),
        )
        if b is None or c is None:
            side, value = ("baseline", base.get(self.metric)) if b is None else ("candidate", cand.get(self.metric))
            row["reason"] = f"{side} {self.metric} is {describe_bad(value)}"
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
            return CheckResult(
                self.name,
                False,
                "the baseline records no 'labels'; regenerate it with `python -m scripts.mlops baseline`",
            )
        if new is None:
            return CheckResult(self.name, False, "the candidate evaluation records no 'labels' list")
        details = {"candidate": sorted(new), "baseline": sorted(base), "missing": sorted(base - new)}
        if not base <= new:
            shown_new = "(" + ", ".join(repr(label) for label in sorted(new)) + ")"
            shown_base = "{" + ", ".join(repr(label) for label in sorted(base)) + "}"
            return CheckResult(
                self.name, False, f"New labels set {shown_new} does not cover baseline {shown_base}", details
            )
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
                return CheckResult(
                    self.name, False, f"the {side} eval_set_hash {value!r} is not a sha256 fingerprint", details
                )
        if new != base:
            assert isinstance(new, str) and isinstance(base, str)  # checked just above
            return CheckResult(
                self.name,
                False,
                f"evaluated on a different file ({new[:19]}...) than the baseline "
                f"({base[:19]}...): the numbers are not comparable",
                details,
            )
        return CheckResult(self.name, True, f"same evaluation set as the baseline ({str(base)[:19]}...)", details)


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
        problems = [
            f"{label}: {', '.join(items)}"
            for label, items in (("missing columns", missing), ("new columns", extra), ("type changes", changed))
            if items
        ]
        if problems:
            return CheckResult(
                self.name, False, "input schema differs from production (" + "; ".join(problems) + ")", details
            )
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
    a couple of untimed warm-up calls, in this process (no network, no server). ``calls`` is
    bounded by :data:`MAX_LATENCY_CALLS`.

    What it measures: with the default 50 calls, the p95 (numpy's linear interpolation) lies
    between the fourth- and third-slowest samples, so three slow calls (a garbage collection,
    a busy neighbour) move it. It reliably catches a *systematic* slowdown, every call slower by
    a similar amount (the catalogue's ``latency_regression`` adds 150 ms to each call), and
    keeps the gate to about a second. It is not an estimate of the tail a service's users
    see: for that, time a few thousand calls against the running server.
    """

    budget_ms: float = DEFAULT_LATENCY_BUDGET_MS
    calls: int = DEFAULT_LATENCY_CALLS
    name: str = "latency_p95"

    def __post_init__(self) -> None:
        _require_number("latency budget (ms)", self.budget_ms, low=0.0)
        if isinstance(self.calls, bool) or not isinstance(self.calls, int) or not 1 <= self.calls <= MAX_LATENCY_CALLS:
            raise MlopsError(
                f"latency calls must be a whole number from 1 to {MAX_LATENCY_CALLS}, got {self.calls!r}",
                "50 calls (the default) catch a systematic slowdown in about a second; their p95 is about the "
                "third-slowest sample, not a tail estimate.",
            )

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
        details = {
            "p50_ms": round(p50, 2),
            "p95_ms": round(p95, 2),
            "max_ms": round(max(timings), 2),
            "calls": self.calls,
            "budget_ms": self.budget_ms,
        }
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
