"""The regression-injection catalogue: one known defect per entry, with the checks it must fail.

Each :class:`Injection` builds a candidate from the production model (:class:`InjectionContext`)
and names the gate checks it must fail under :data:`CATALOGUE_POLICY`; the control entry
(``identity_wrapper``) must pass every check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import registry
from ..errors import MlopsError
from .register import register_label_noise, register_slice_corruption, register_without_column, register_wrapper

if TYPE_CHECKING:
    from ..gate import Check, GateReport

#: The lab's degraded candidate: corrupt this share of the smallest slice.
LAB_SLICE = "enterprise"
LAB_FRACTION = 0.15


@dataclass(frozen=True)
class InjectionContext:
    """What every injection builds from: the production model and the data files."""

    base_uri: str  # the production version, e.g. models:/churn-classifier/1
    register: str  # registered model name for the degraded candidates
    datasets: Mapping[str, Path]  # "v1", "v2", "eval" (from data.write_datasets)
    scratch: Path  # folder for derived files (noisy training data)
    seed: int = 0


@dataclass(frozen=True)
class Candidate:
    """A built candidate: the model to gate and the data file to evaluate it on."""

    uri: str
    version: int | None
    data_path: Path


@dataclass(frozen=True)
class Injection:
    """One catalogue entry: a defect, how to build it, and the checks it must fail."""

    name: str
    description: str
    builder: Callable[..., Candidate]
    params: Mapping[str, Any] = field(default_factory=dict)
    expected_failures: frozenset[str] = frozenset()

    def build(self, ctx: InjectionContext) -> Candidate:
        return self.builder(ctx, **self.params)

    def run(
        self, ctx: InjectionContext, baseline: Mapping[str, Any], checks: "list[Check] | None" = None
    ) -> tuple[Candidate, "GateReport"]:
        """Build the candidate and put it through the gate (default: :func:`catalogue_checks`)."""
        from .. import gate

        candidate = self.build(ctx)
        evidence = gate.collect_evidence(candidate.uri, candidate.data_path, baseline, production_uri=ctx.base_uri)
        return candidate, gate.run_gate(catalogue_checks() if checks is None else checks, evidence)


def _registered(ctx: InjectionContext, version: int) -> Candidate:
    return Candidate(registry.model_uri(ctx.register, version), version, Path(ctx.datasets["eval"]))


def _build_wrapper(ctx: InjectionContext, *, kind: str, **settings: Any) -> Candidate:
    from . import wrappers

    model = getattr(wrappers, kind)(**settings)
    return _registered(ctx, register_wrapper(model, ctx.base_uri, register=ctx.register, run_name=f"inject-{kind}"))


def _build_slice(ctx: InjectionContext, *, slice_name: str, fraction: float) -> Candidate:
    return _registered(
        ctx, register_slice_corruption(ctx.base_uri, slice_name, fraction, register=ctx.register, seed=ctx.seed)
    )


def _build_label_noise(ctx: InjectionContext, *, fraction: float, flip_from: str | None) -> Candidate:
    version = register_label_noise(
        ctx.datasets["v1"],
        ctx.datasets["eval"],
        fraction,
        register=ctx.register,
        scratch=ctx.scratch,
        seed=ctx.seed,
        flip_from=flip_from,
    )
    return _registered(ctx, version)


def _build_dropped_column(ctx: InjectionContext, *, column: str) -> Candidate:
    return _registered(
        ctx, register_without_column(ctx.datasets["v1"], ctx.datasets["eval"], column, register=ctx.register)
    )


def _build_wrong_eval_set(ctx: InjectionContext, *, batch: str) -> Candidate:
    return Candidate(ctx.base_uri, None, Path(ctx.datasets[batch]))


#: Policy the catalogue's expected verdicts were calibrated for (see :func:`catalogue_checks`).
CATALOGUE_POLICY: Mapping[str, Any] = {
    "tolerance": 0.02,
    "min_slice_size": 30,
    "floor": 0.75,
    "latency_budget_ms": 100.0,
    "latency_calls": 20,
}

CATALOGUE: tuple[Injection, ...] = (
    Injection(
        "identity_wrapper",
        "Control: the production model inside a wrapper that changes nothing. Must pass every check.",
        _build_wrapper,
        {"kind": "WrappedModel"},
        frozenset(),
    ),
    Injection(
        "slice_corruption",
        f"Flip the predicted label for ~{LAB_FRACTION:.0%} of {LAB_SLICE} rows: overall accuracy moves by under "
        "a point, the smallest slice drops far beyond the tolerance.",
        _build_slice,
        {"slice_name": LAB_SLICE, "fraction": LAB_FRACTION},
        frozenset({"slice_regression"}),
    ),
    Injection(
        "label_noise",
        "Retrain on v1 after 30% of churners were relabelled 'no' (churn events lost upstream).",
        _build_label_noise,
        {"fraction": 0.3, "flip_from": "yes"},
        frozenset({"slice_regression", "metric_floor"}),
    ),
    Injection(
        "dropped_column",
        "Retrain without the data_usage_gb column: accuracy is unchanged, but the serving contract is not.",
        _build_dropped_column,
        {"column": "data_usage_gb"},
        frozenset({"input_schema"}),
    ),
    Injection(
        "latency_regression",
        "Every prediction call sleeps 150 ms (a slow feature lookup); predictions unchanged.",
        _build_wrapper,
        {"kind": "AddedLatency", "delay_ms": 150.0},
        frozenset({"latency_p95"}),
    ),
    Injection(
        "threshold_shift",
        "Predict churn only at probability >= 0.65 instead of 0.5: fewer churners flagged.",
        _build_wrapper,
        {"kind": "ThresholdShift", "threshold": 0.65},
        frozenset({"slice_regression"}),
    ),
    Injection(
        "label_rename",
        "Predict 'No'/'Yes' instead of 'no'/'yes': every prediction is now 'wrong' and consumers break.",
        _build_wrapper,
        {"kind": "LabelRename", "mapping": {"no": "No", "yes": "Yes"}},
        frozenset({"label_coverage", "slice_regression", "metric_floor"}),
    ),
    Injection(
        "wrong_eval_set",
        "The production model evaluated on churn_v2.csv instead of the frozen evaluation set.",
        _build_wrong_eval_set,
        {"batch": "v2"},
        frozenset({"eval_set_fingerprint", "slice_regression"}),
    ),
)


def catalogue_checks() -> "list[Check]":
    """The gate policy the catalogue's expected verdicts hold for."""
    from .. import gate

    return gate.default_checks(**CATALOGUE_POLICY)


def by_name(name: str) -> Injection:
    """The catalogue entry called ``name``."""
    for injection in CATALOGUE:
        if injection.name == name:
            return injection
    raise MlopsError(f"no injection named {name!r}", f"choose one of {[i.name for i in CATALOGUE]}.")
