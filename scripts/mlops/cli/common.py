"""Argument types and helpers shared by the command groups."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..workspace import Workspace


def open_cli_workspace(args: argparse.Namespace) -> "Workspace":
    """The workspace named by ``--workspace`` (kept as it is: commands never empty it)."""
    from ..workspace import open_workspace

    return open_workspace(args.workspace, fresh=False)


def port(text: str) -> int:
    """A TCP port number, 0-65535 (0: the system picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535; 0 picks a free one)")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def bounded_text(limit: int) -> "type[str] | object":
    """An argparse type accepting text of at most ``limit`` characters."""

    def check(text: str) -> str:
        if len(text) > limit:
            raise argparse.ArgumentTypeError(f"{len(text)} characters is too long (at most {limit})")
        return text

    check.__name__ = f"text of at most {limit} characters"
    return check


def import_skops_first() -> None:
    """Import skops before MLflow, in a command that will load a model.

    skops builds its list of trusted NumPy functions at import by searching every loaded
    module for each one. With MLflow's thousand modules loaded first, that search costs
    seconds; before them, a fraction of a second.
    """
    import skops.io  # noqa: F401
