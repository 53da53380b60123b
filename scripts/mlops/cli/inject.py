"""``inject`` and ``injections``: degraded candidates for the gate to catch."""

from __future__ import annotations

import argparse
from typing import Any

from ..inject import LAB_FRACTION, LAB_SLICE


def cmd_inject(args: argparse.Namespace) -> int:
    from .. import data, inject
    from ..errors import MlopsError
    from .common import open_cli_workspace

    if args.slice not in data.SEGMENTS:
        raise MlopsError(f"unknown slice {args.slice!r}", f"choose one of {list(data.SEGMENTS)}.")
    inject.check_fraction(args.fraction)
    inject.check_seed(args.seed)
    open_cli_workspace(args)
    version = inject.register_slice_corruption(
        args.base, args.slice, args.fraction, register=args.register, seed=args.seed
    )
    print(
        f"registered models:/{args.register}/{version}: {args.base} with the label flipped for ~{args.fraction:.0%} "
        f"of {args.slice!r} rows (seed {args.seed})"
    )
    return 0


def cmd_injections(args: argparse.Namespace) -> int:
    from ..inject import CATALOGUE, CATALOGUE_POLICY

    print(f"Expected verdicts hold for the policy {dict(CATALOGUE_POLICY)}\n")
    for injection in CATALOGUE:
        failures = ", ".join(sorted(injection.expected_failures))
        verdict = f"must fail: {failures}" if failures else "must pass every check"
        print(f"{injection.name:20s} {verdict}\n{'':20s} {injection.description}")
    return 0


def register(commands: Any) -> None:
    p = commands.add_parser("inject", help="register a copy of a model that corrupts one slice's predictions")
    p.add_argument("--base", required=True, help="model to corrupt, e.g. models:/churn-classifier/1")
    p.add_argument("--slice", default=LAB_SLICE, help=f"segment to corrupt (default {LAB_SLICE})")
    p.add_argument(
        "--fraction",
        type=float,
        default=LAB_FRACTION,
        help=f"share of that segment's predictions to flip (default {LAB_FRACTION})",
    )
    p.add_argument("--seed", type=int, default=0, help="which rows are flipped (default 0)")
    p.add_argument("--register", required=True, metavar="NAME", help="registered model to add the version to")
    p.set_defaults(func=cmd_inject)

    p = commands.add_parser("injections", help="list the regression-injection catalogue and expected gate verdicts")
    p.set_defaults(func=cmd_injections)
