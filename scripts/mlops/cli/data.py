"""``data`` and ``fingerprint``: the seeded churn files and their SHA-256."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import open_cli_workspace


def cmd_data(args: argparse.Namespace) -> int:
    from .. import data

    folder = Path(args.out) if args.out else open_cli_workspace(args).data_dir
    for name, path in data.write_datasets(folder, batches=args.batch or tuple(data.FILENAMES)).items():
        print(f"{name:5s} {path}  {data.fingerprint(path)}")
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from .. import data

    for path in args.paths:
        print(f"{data.fingerprint(path)}  {path}")
    return 0


def register(commands: Any) -> None:
    p = commands.add_parser("data", help="write the seeded churn data files (v1, v2, eval)")
    p.add_argument("--out", help="folder for the CSV files (default: the workspace's data/)")
    p.add_argument(
        "--batch",
        action="append",
        choices=("v1", "v2", "eval"),
        help="write only this batch (repeatable; default: all three), e.g. --batch eval for the frozen set",
    )
    p.set_defaults(func=cmd_data)

    p = commands.add_parser("fingerprint", help="print the SHA-256 fingerprint of data files")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_fingerprint)
