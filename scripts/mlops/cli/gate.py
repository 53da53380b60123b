"""``gate``, ``baseline``, ``compare-baseline``, ``baseline-refresh``: judging a candidate."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import EXIT_OK, EXIT_REFUSED, EXIT_UNUSABLE
from ..gate.checks import (
    DEFAULT_FLOOR,
    DEFAULT_LATENCY_BUDGET_MS,
    DEFAULT_LATENCY_CALLS,
    DEFAULT_MIN_SLICE_SIZE,
    DEFAULT_TOLERANCE,
    MAX_LATENCY_CALLS,
)
from .common import import_skops_first, open_cli_workspace


def cmd_gate(args: argparse.Namespace) -> int:
    import_skops_first()
    from .. import evaluate, gate

    baseline = gate.load_evaluation(args.baseline, "baseline")
    checks = gate.default_checks(
        tolerance=args.tolerance,
        min_slice_size=args.min_slice_size,
        allow_small_slices=args.allow_small_slices,
        floor=args.floor,
        latency_budget_ms=args.latency_budget_ms,
        latency_calls=args.latency_calls,
    )
    open_cli_workspace(args)
    evidence = gate.collect_evidence(args.candidate_uri, args.data, baseline, production_uri=args.production_uri)
    if args.out and evidence.candidate is not None:
        evaluate.write_json(dict(evidence.candidate), args.out)
    report = gate.run_gate(checks, evidence)
    print(f"{report.summary()}  candidate: {args.candidate_uri}\n")
    print(report.to_markdown())
    try:
        rows = [row for row in report[gate.SliceRegression.name].details.get("rows", []) if row["status"] != "pass"]
    except KeyError:
        rows = []
    if rows:
        print("\nSlices that did not pass:\n")
        print(gate.slice_markdown(rows))
    return EXIT_OK if report.passed else EXIT_REFUSED


def cmd_baseline(args: argparse.Namespace) -> int:
    from .. import evaluate, gate

    open_cli_workspace(args)
    document = gate.make_baseline(args.model, args.alias, args.data)
    evaluate.write_json(document, args.out)
    print(
        f"wrote {args.out}: {args.model} version {document['version']} (@{args.alias}), "
        f"accuracy {document['overall']['accuracy']:.4f} on {document['overall']['n']} rows"
    )
    return EXIT_OK


def cmd_compare_baseline(args: argparse.Namespace) -> int:
    from .. import compare_baseline as compare
    from .. import gate

    baseline = gate.load_evaluation(args.baseline, "baseline")
    candidate = gate.load_evaluation(args.candidate, "candidate")
    report = compare.compare(
        candidate,
        baseline,
        tolerance=args.tolerance,
        min_slice_size=args.min_slice_size,
        allow_small_slices=args.allow_small_slices,
    )
    if report.passed:
        print(compare.summary_line(report, baseline, args.tolerance))
        return EXIT_OK
    print(compare.failure_line(report, args.tolerance) + "\n")
    print(compare.failure_table(report))
    return EXIT_REFUSED


def cmd_baseline_refresh(args: argparse.Namespace) -> int:
    from .. import baseline_refresh

    if not args.check:
        baseline_refresh.regenerate(args.out)
        print(f"wrote {args.out}")
        return EXIT_OK
    diff = baseline_refresh.stale_diff(args.out)
    if not diff:
        print(f"{args.out} is up to date")
        return EXIT_OK
    sys.stdout.write(diff)
    print(f"\n{args.out} is stale: run `python -m scripts.mlops baseline-refresh` and commit it", file=sys.stderr)
    return EXIT_UNUSABLE


def _slice_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"allowed drop per slice (default {DEFAULT_TOLERANCE})",
    )
    p.add_argument(
        "--min-slice-size",
        type=int,
        default=DEFAULT_MIN_SLICE_SIZE,
        help=f"slices with fewer rows fail as too small to judge (default {DEFAULT_MIN_SLICE_SIZE})",
    )
    p.add_argument(
        "--allow-small-slices",
        action="store_true",
        help="skip (and report) slices below the minimum size instead of failing them",
    )


def register(commands: Any) -> None:
    from ..baseline_refresh import BASELINE_PATH

    p = commands.add_parser(
        "gate", help="run the promotion gate on a candidate (exit 0 pass, 2 fail, 1 unusable input)"
    )
    p.add_argument("--candidate-uri", required=True, help="models:/NAME/VERSION or models:/NAME@ALIAS")
    p.add_argument("--baseline", required=True, help="baseline evaluation JSON (e.g. eval_baseline.json)")
    p.add_argument("--data", required=True, help="the frozen evaluation CSV the baseline was computed on")
    _slice_policy(p)
    p.add_argument(
        "--floor", type=float, default=DEFAULT_FLOOR, help=f"minimum overall accuracy (default {DEFAULT_FLOOR})"
    )
    p.add_argument(
        "--latency-budget-ms",
        type=float,
        default=DEFAULT_LATENCY_BUDGET_MS,
        help=f"p95 single-record latency budget (default {DEFAULT_LATENCY_BUDGET_MS:g} ms)",
    )
    p.add_argument(
        "--latency-calls",
        type=int,
        default=DEFAULT_LATENCY_CALLS,
        help=f"single-record calls to time (default {DEFAULT_LATENCY_CALLS}, max {MAX_LATENCY_CALLS})",
    )
    p.add_argument(
        "--production-uri",
        help="model whose input schema the candidate must match (default: the baseline's model and version)",
    )
    p.add_argument("--out", help="also write the candidate's evaluation JSON here")
    p.set_defaults(func=cmd_gate)

    p = commands.add_parser("baseline", help="write the evaluation baseline of the version an alias points at")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--alias", default="production", help="alias to resolve (default: production)")
    p.add_argument("--data", required=True, help="the frozen evaluation CSV")
    p.add_argument("--out", default="eval_baseline.json", help="where to write it (default: eval_baseline.json)")
    p.set_defaults(func=cmd_baseline)

    p = commands.add_parser(
        "compare-baseline",
        help="compare a candidate's evaluation JSON with the baseline, "
        "slice by slice (exit 0 pass, 2 regression, 1 unusable input)",
    )
    p.add_argument("--candidate", required=True, help="the candidate's evaluation JSON")
    p.add_argument("--baseline", required=True, help="the baseline evaluation JSON (eval_baseline.json)")
    _slice_policy(p)
    p.set_defaults(func=cmd_compare_baseline)

    p = commands.add_parser(
        "baseline-refresh",
        help="regenerate the committed eval_baseline.json from scratch (--check: exit 1 if it would change)",
    )
    p.add_argument("--out", default=str(BASELINE_PATH), help="where to write (default: the committed file)")
    p.add_argument("--check", action="store_true", help="only compare with --out; exit 1 if it would change")
    p.set_defaults(func=cmd_baseline_refresh)
