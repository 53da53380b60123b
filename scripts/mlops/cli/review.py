"""``bundle cut`` and ``audit``: a promoted version's release bundle, and its review by evidence.

    python -m scripts.mlops bundle cut --model churn-classifier --version 2 --out release-v2
    python -m scripts.mlops audit release-v2 [--report audit.md]

``audit`` exits 0 when every review question is answered by the evidence (accept), 2 when any
is not (reject; the Markdown report says which, why, and the repair), 1 when the folder is not a
bundle at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, EXIT_REFUSED
from .common import open_cli_workspace, positive_int


def cmd_bundle_cut(args: argparse.Namespace) -> int:
    from .. import bundle
    from ..baseline_refresh import BASELINE_PATH

    open_cli_workspace(args)
    folder = bundle.cut(
        args.model, args.version, Path(args.out), baseline_path=args.baseline or BASELINE_PATH, alias=args.alias
    )
    print(f"cut the release bundle of {args.model} version {args.version} into {folder}")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from ..audit import audit
    from ..audit.reeval import Pending
    from ..files import write_atomic

    # First, before MLflow is imported: re-evaluate the model in a second process that imports
    # only skops and scikit-learn, while this one answers the registry's questions. Each import
    # set costs seconds; on two cores they overlap.
    pending = Pending.start(args.bundle)
    try:
        open_cli_workspace(args)
    except BaseException:
        if pending is not None:
            pending.stop()
        raise
    report = audit(args.bundle, pending=pending)
    text = report.markdown()
    print(text, end="")
    if args.report:
        write_atomic(Path(args.report), text)
    return EXIT_OK if report.accepted else EXIT_REFUSED


def register(commands: Any) -> None:
    """Add the ``bundle`` and ``audit`` commands."""
    group = commands.add_parser("bundle", help="release bundles cut from the registry and the run")
    sub = group.add_subparsers(dest="bundle_command", required=True)
    p = sub.add_parser("cut", help="cut the release bundle of the promoted version into a new folder")
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True, type=positive_int)
    p.add_argument("--alias", default="production", help="the alias that must point at the version")
    p.add_argument("--baseline", help="baseline the gate record compares with (default: eval_baseline.json)")
    p.add_argument("--out", required=True, help="a new folder for the bundle")
    p.set_defaults(func=cmd_bundle_cut)

    p = commands.add_parser("audit", help="review a release bundle by evidence (exit 2 = reject)")
    p.add_argument("bundle", help="the bundle folder")
    p.add_argument("--report", help="also write the Markdown report to this file")
    # Read-only, and its report is written atomically: no need to wait for the interpreter's teardown.
    p.set_defaults(func=cmd_audit, quick_exit=True)
