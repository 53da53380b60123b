"""The lab toolkit from a shell: python -m scripts.mlops COMMAND (also installed as mlops).

One file per command group in this package; each defines its sub-commands in
``register(commands)`` and implements them as ``cmd_*(args) -> int``, calling the library
(the library never calls the command line). Every command works in a workspace folder
(``--workspace``, default ``.mlops/cli``) unless ``MLFLOW_TRACKING_URI`` points elsewhere.

Exit codes, the same for every command: **0** done (or passed), **2** refused (a gate or a
comparison said no), **1** unusable input -- then the command prints exactly one
``error: ...`` line and one ``fix: ...`` line, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from ..errors import EXIT_UNUSABLE, MlopsError
from . import ci, data, doctor, gate, incidents, inject, models, review, serve

#: The command groups, in the order ``--help`` lists them.
GROUPS: tuple[ModuleType, ...] = (data, models, gate, inject, serve, ci, review, doctor, incidents)


class ToolkitParser(argparse.ArgumentParser):
    """argparse with the toolkit's exit codes: a usage error is unusable input (1), not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        print(f"fix: see `{self.prog} --help`.", file=sys.stderr)
        sys.exit(EXIT_UNUSABLE)


def print_error(problem: str, fix: str | None) -> None:
    """The one way a command reports a problem: an ``error:`` line and a ``fix:`` line on stderr."""
    print(f"error: {problem}", file=sys.stderr)
    if fix:
        print(f"fix: {fix}", file=sys.stderr)


@functools.cache
def build_parser() -> ToolkitParser:
    """The command line's parser, built once per process (parsing does not change it).

    The warm interpreter (:mod:`scripts.mlops._preload`) builds it before it forks commands, so a
    forked command does not build its thirty subcommands again (about 10 ms, mostly gettext
    looking for translations of argparse's own words).
    """
    parser = ToolkitParser(prog="python -m scripts.mlops", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workspace", default="cli", help="workspace folder name under .mlops/ (default: cli)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return parser


#: Set by :func:`main` when the command that ran asked to skip the interpreter's teardown.
QUICK_EXIT = False


def quick_exit(code: int) -> NoReturn:
    """Exit without tearing the interpreter down: exit handlers, flush, then ``os._exit``.

    Freeing the thousands of modules MLflow, SQLAlchemy and scikit-learn load takes the
    interpreter about a second at exit. A command that has finished everything it writes (its
    files are written atomically and synced) can skip that: ``audit`` does.
    """
    import atexit
    import os

    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is not None:
        run_exit_handlers()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    global QUICK_EXIT
    args = build_parser().parse_args(argv)
    QUICK_EXIT = bool(getattr(args, "quick_exit", False))
    try:
        return int(args.func(args))
    except MlopsError as exc:
        print_error(exc.problem, exc.fix)
    except OSError as exc:  # a path the user gave that cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print_error(
            f"{exc.strerror or exc}{where}",
            "check the path and its permissions (--out names a file, `data --out` a folder).",
        )
    except KeyboardInterrupt:
        print_error("interrupted", None)
        return 130
    except Exception as exc:  # noqa: BLE001 - no raw traceback for a learner
        if type(exc).__module__.split(".")[0] in ("mlflow", "sqlalchemy", "requests", "urllib3"):
            from ..registry import translate  # the store failed: say which store and what to do

            error = translate(exc)
            print_error(error.problem, error.fix)
            return EXIT_UNUSABLE
        # Anything else is a bug in the toolkit; the tests fail on this message.
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print_error(
            f"unexpected {type(exc).__name__}: {first}",
            "this is a bug in the toolkit, not in your input: please report it with the command you ran.",
        )
    return EXIT_UNUSABLE
