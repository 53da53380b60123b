"""``python -m scripts.grading <command>``: generate labs, refresh reference outputs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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


def cmd_grade(args: argparse.Namespace) -> int:
    from .grade import grade

    rows = grade(
        args.lab,
        args.submissions,
        args.out,
        jobs=args.jobs,
        timeout=args.timeout,
        private=args.private,
        sandboxed=not args.no_sandbox,
        resume=args.resume,
    )
    graded = sum(1 for row in rows if row.status == "ok")
    print(
        f"graded {len(rows)} submission(s) ({graded} ok, {len(rows) - graded} with a status): {Path(args.out) / 'gradebook.csv'}"
        f", class report {Path(args.out) / 'report.html'}"
    )
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from .record import labs, record

    for lab in args.labs or labs():
        print(f"recorded {record(lab, timeout=args.timeout).relative_to(assign.REPO)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import tempfile

    from . import sandbox
    from .grade import grade

    try:  # a student's own notebook: the sandbox when this machine has one, else plainly
        sandbox.check_works()
        sandboxed = True
    except sandbox.SandboxUnavailable:
        sandboxed = False

    notebook = Path(args.notebook)
    lab = args.lab or notebook.name.split("-", 1)[0]
    with tempfile.TemporaryDirectory(prefix="lab-check-") as scratch:
        rows = grade(lab, [notebook], scratch, jobs=1, timeout=args.timeout, sandboxed=sandboxed, class_report=False)
        row = rows[0]
        width = max(len(ex) for ex in row.scores)
        print(f"\n{notebook.name}: {row.total:g} / {row.max:g} points  (status: {row.status})")
        for exercise, points in row.scores.items():
            print(f"  Exercise {exercise:{width}s}  {points:g}")
        if row.flags:
            print("  flags: " + ", ".join(row.flags))
        if row.detail:
            print("  " + row.detail)
        (feedback,) = (Path(scratch) / "feedback").glob("*.md")  # one notebook, one feedback file
        print("\nDetails:\n" + feedback.read_text())
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

    p = commands.add_parser("grade", help="grade submitted notebooks into a gradebook")
    p.add_argument("--lab", required=True, help="lab number, e.g. 00")
    p.add_argument("submissions", nargs="+", help=".ipynb files or folders of them")
    p.add_argument("--out", required=True, help="folder for gradebook.csv, gradebook.json, report.html and feedback/")
    p.add_argument("-j", "--jobs", type=int, default=1, help="notebooks graded in parallel")
    p.add_argument("--private", help="folder with held-out checks (<lab notebook stem>.hidden.json)")
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per cell (output included) before it is interrupted"
    )
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run kernels without bubblewrap (unsafe for untrusted notebooks; every row is flagged `unsandboxed`)",
    )
    p.add_argument(
        "--resume", action="store_true", help="keep the results already in --out and grade only what is missing"
    )
    p.set_defaults(func=cmd_grade)

    p = commands.add_parser(
        "record", help="run reference solutions and record the answer key the grader judges against"
    )
    p.add_argument("labs", nargs="*", help="lab numbers (default: every lab)")
    p.add_argument("--timeout", type=float, default=180.0)
    p.set_defaults(func=cmd_record)

    p = commands.add_parser("check", help="run your lab notebook in a fresh kernel and show your score")
    p.add_argument("notebook")
    p.add_argument("--lab", help="lab number (default: from the file name)")
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(func=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except authoring.AuthoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # GradingError and friends: a message, not a traceback
        from .grade import GradingError

        if not isinstance(exc, GradingError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
