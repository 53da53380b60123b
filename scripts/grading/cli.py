"""``python -m scripts.grading <command>``: generate labs, refresh reference outputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from . import assign, authoring


def cmd_assign(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.notebooks] or assign.solutions()
    if not paths:
        print("error: no reference notebooks found in solutions/", file=sys.stderr)
        return 1
    stale: list[str] = []
    for path in paths:
        generated = assign.build(path.resolve())
        if args.check:
            stale += assign.drift(generated)
        else:
            for written in assign.write(generated):
                print(f"wrote {written.relative_to(assign.REPO)}")
    if args.check:
        if stale:
            print("out of date (run `make labs`): " + ", ".join(stale), file=sys.stderr)
            return 1
        print(f"{len(paths)} lab(s) up to date with solutions/")
    return 0


def cmd_execute(args: argparse.Namespace) -> int:
    from .execute import refresh

    for path in args.notebooks:
        refresh(path, timeout=args.timeout)
        print(f"executed {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.grading", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("assign", help="generate labs/ and grading manifests from solutions/")
    p.add_argument("notebooks", nargs="*", help="reference notebooks (default: every solutions/NN-*.ipynb)")
    p.add_argument("--check", action="store_true", help="only report drift; exit 1 if anything is stale")
    p.set_defaults(func=cmd_assign)
    p = commands.add_parser("execute", help="re-run reference notebooks and store their outputs")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--timeout", type=int, default=180, help="seconds per cell")
    p.set_defaults(func=cmd_execute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except authoring.AuthoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
