"""``serve``: one registry alias over HTTP (``/health``, ``/predict``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import open_cli_workspace, port


def cmd_serve(args: argparse.Namespace) -> int:
    from ..app import DEFAULT_HOST, Resolved, listening_socket, preload_loader, serve

    if args.fd is None and args.port:
        # Fail fast: a taken port is reported before the model's seconds-long load, not after.
        # The probe socket is closed at once, so the port refuses connections while the model
        # loads (clients see "connection refused", never a hang), and is bound again to serve.
        listening_socket(args.host or DEFAULT_HOST, args.port).close()
    told = (args.version, args.run_id, args.model_dir)
    if any(value is not None for value in told) and None in told:
        raise SystemExit("error: --version, --run-id and --model-dir go together (all three or none)")
    resolved = loader = None
    if args.model_dir is not None:  # resolved by the parent: no registry, no MLflow
        resolved = Resolved(args.version, args.run_id, Path(args.model_dir))
    else:
        loader = preload_loader()
        open_cli_workspace(args)
    serve(
        args.model,
        args.alias,
        host=args.host or DEFAULT_HOST,
        port=args.port,
        fd=args.fd,
        resolved=resolved,
        preload=loader,
        fast=not args.no_fast_path,
    )
    return 0


def register(commands: Any) -> None:
    p = commands.add_parser("serve", help="serve models:/NAME@ALIAS over HTTP (/health, /predict)")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", required=True)
    p.add_argument("--port", type=port, default=8000, help="TCP port; 0 picks a free one (printed at start)")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument(
        "--no-fast-path",
        action="store_true",
        help="predict with the pipeline's own predict instead of its verified numpy path",
    )
    # What the alias resolved to, from a parent that resolved it (scripts.mlops.server): the
    # server then loads the folder with skops and never imports MLflow.
    p.add_argument("--version", type=int, help=argparse.SUPPRESS)
    p.add_argument("--run-id", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    # A listening socket inherited from scripts.mlops.server (which knows its port already).
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)
