"""``doctor``: check a workspace or tracking store and print a ✓/✗ table with the fix for each problem."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, EXIT_UNUSABLE
from .common import port


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor import Options, diagnose, render, to_json

    options = Options(
        workspace=args.target_workspace,
        tracking_uri=args.tracking_uri,
        model=args.model,
        port=args.port,
        data=Path(args.data) if args.data else None,
        baseline=Path(args.baseline) if args.baseline else None,
        eval_file=Path(args.eval) if args.eval else None,
    )
    report = diagnose(options)
    print(json.dumps(to_json(report), indent=2) if args.json else render(report))
    return EXIT_OK if report.healthy else EXIT_UNUSABLE


def register(commands: Any) -> None:
    p = commands.add_parser(
        "doctor",
        help="check a workspace or tracking store; a ✓/✗ table with the fix for each problem (exit 1 if any)",
        description="Checks which store the tracking URI resolves to, that it answers (short timeout), its schema "
        "revision, a lock on it, models, aliases and their artifacts, and optionally a port, the evaluation "
        "set's fingerprint and a data file's labels. Changes nothing. Exit 0 healthy, 1 otherwise.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workspace",
        dest="target_workspace",
        metavar="DIR",
        help="a lab workspace folder (or its name under .mlops/); default: MLFLOW_TRACKING_URI, else MLflow's default",
    )
    where.add_argument("--tracking-uri", metavar="URI", help="a tracking URI (sqlite:///..., http://127.0.0.1:PORT)")
    p.add_argument("--model", default="churn-classifier", help="registered model whose aliases to check")
    p.add_argument("--port", type=port, help="also check that this TCP port is free, or name its owner")
    p.add_argument("--data", metavar="FILE", help="also check the label set of this data file")
    p.add_argument(
        "--baseline", metavar="FILE", help="also check the evaluation set's fingerprint against this baseline"
    )
    p.add_argument("--eval", metavar="FILE", help="the evaluation file for --baseline (default: the workspace's)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON instead of the table")
    p.set_defaults(func=cmd_doctor)
