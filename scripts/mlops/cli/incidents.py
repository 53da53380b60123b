"""``incidents``: the troubleshooting catalogue (symptom, cause, fix, anti-fix, what doctor sees)."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import EXIT_OK


def cmd_incidents(args: argparse.Namespace) -> int:
    from ..incidents import CATALOGUE, by_name

    if args.markdown:
        from ..incidents.page import reference_markdown

        print(reference_markdown(), end="")
        return EXIT_OK
    chosen = [by_name(args.name)] if args.name else list(CATALOGUE)
    for incident in chosen:
        seen = (
            f"doctor check: {incident.doctor_check}" if incident.doctor_check else "doctor cannot see it from outside"
        )
        print(f"{incident.name}: {incident.describe()}\n  {seen}\n")
    return EXIT_OK


def register(commands: Any) -> None:
    p = commands.add_parser("incidents", help="list the troubleshooting incidents: symptom, cause, fix and anti-fix")
    p.add_argument("name", nargs="?", help="show only this incident")
    p.add_argument(
        "--markdown", action="store_true", help="print the book's troubleshooting reference (book/_incidents.md)"
    )
    p.set_defaults(func=cmd_incidents)
