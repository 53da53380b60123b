"""A promotion gate: composable checks that a candidate model must pass before it ships.

* :mod:`.report` -- :class:`CheckResult`, :class:`Evidence`, :class:`GateReport`, :func:`run_gate`;
* :mod:`.checks` -- the checks (floor, slices, labels, eval set, schema, latency) and
  :func:`default_checks`, the project's policy;
* :mod:`.evidence` -- evaluation documents on disk, evidence and baselines from the registry.

Typical use in a notebook::

    evidence = gate.collect_evidence("models:/churn-classifier/2", eval_csv, baseline)
    report = gate.run_gate(gate.default_checks(tolerance=0.02), evidence)
    report            # renders as a Markdown table; report.to_frame() for a DataFrame

From a shell: ``python -m scripts.mlops gate --candidate-uri models:/NAME/N --baseline
eval_baseline.json --data EVAL.csv`` (exit 0 pass, 2 fail, 1 unusable input) and
``python -m scripts.mlops baseline --model NAME --alias production --data EVAL.csv --out
eval_baseline.json``.
"""

from ..errors import EXIT_OK as EXIT_PASS
from ..errors import EXIT_REFUSED as EXIT_FAIL
from ..errors import EXIT_UNUSABLE
from .checks import (
    DEFAULT_FLOOR,
    DEFAULT_LATENCY_BUDGET_MS,
    DEFAULT_LATENCY_CALLS,
    DEFAULT_METRIC,
    DEFAULT_MIN_SLICE_SIZE,
    DEFAULT_TOLERANCE,
    EPSILON,
    LATENCY_WARMUP_CALLS,
    MAX_LATENCY_CALLS,
    EvalSetMatch,
    LabelCoverage,
    LatencyBudget,
    MetricFloor,
    SchemaMatch,
    SliceRegression,
    default_checks,
    schema_columns,
)
from .evidence import REQUIRED_KEYS, collect_evidence, load_evaluation, make_baseline
from .report import Check, CheckResult, Evidence, GateReport, markdown_cell, run_gate, slice_markdown

__all__ = [
    "DEFAULT_FLOOR",
    "DEFAULT_LATENCY_BUDGET_MS",
    "DEFAULT_LATENCY_CALLS",
    "DEFAULT_METRIC",
    "DEFAULT_MIN_SLICE_SIZE",
    "DEFAULT_TOLERANCE",
    "EPSILON",
    "EXIT_FAIL",
    "EXIT_PASS",
    "EXIT_UNUSABLE",
    "LATENCY_WARMUP_CALLS",
    "MAX_LATENCY_CALLS",
    "REQUIRED_KEYS",
    "Check",
    "CheckResult",
    "EvalSetMatch",
    "Evidence",
    "GateReport",
    "LabelCoverage",
    "LatencyBudget",
    "MetricFloor",
    "SchemaMatch",
    "SliceRegression",
    "collect_evidence",
    "default_checks",
    "load_evaluation",
    "make_baseline",
    "markdown_cell",
    "run_gate",
    "schema_columns",
    "slice_markdown",
]
