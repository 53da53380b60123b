"""``serve``: one registry alias over HTTP (``/health``, ``/predict``)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import open_cli_workspace, port


def cmd_serve(args: argparse.Namespace) -> int:
    from ..app import DEFAULT_HOST, listening_socket, preload_loader, serve

    if args.fd is None and args.port:
        # Fail fast: a taken port is reported before the model's seconds-long load, not after.
        # The probe socket is closed at once, so the port refuses connections while the model
        # loads (clients see "connection refused", never a hang), and is bound again to serve.
        listening_socket(args.host or DEFAULT_HOST, args.port).close()
    loader = preload_loader()
    open_cli_workspace(args)
    serve(args.model, args.alias, host=args.host or DEFAULT_HOST, port=args.port, fd=args.fd, preload=loader)
    return 0


def register(commands: Any) -> None:
    p = commands.add_parser("serve", help="serve models:/NAME@ALIAS over HTTP (/health, /predict)")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", required=True)
    p.add_argument("--port", type=port, default=8000, help="TCP port; 0 picks a free one (printed at start)")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1: this machine only)")
    # A listening socket inherited from scripts.mlops.server (which knows its port already).
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)
