"""``ci ...`` and ``release ...``: the commands the deploy-gate workflow runs, and its offline runner.

    python -m scripts.mlops ci run --workflow .github/workflows/deploy-gate.yml   # the whole gate, offline
    python -m scripts.mlops ci verify-eval-hash --baseline eval_baseline.json --data D.csv
    python -m scripts.mlops ci candidate --file deploy/candidate.json --model churn-classifier
    python -m scripts.mlops ci compare --candidate C.json --baseline eval_baseline.json
    python -m scripts.mlops ci comment --body-env COMMENT_BODY
    python -m scripts.mlops release promote --model M --version N --semver v1.2.0
    python -m scripts.mlops release index

Each workflow step is one of these, so the YAML holds no logic. Inside a step, results go
where GitHub reads them: ``GITHUB_OUTPUT`` (step outputs), ``GITHUB_STEP_SUMMARY`` (the run's
summary page) and the pull-request comment. Exit status: 0 ok, 2 refused (a regression, a
release the index contradicts, not CI), 1 unusable input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, EXIT_REFUSED, EXIT_UNUSABLE, MlopsError
from ..github import add_summary, post_comment, set_output
from .common import open_cli_workspace

# --------------------------------------------------------------------------------------
# Helpers: GitHub's files
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# ci run
# --------------------------------------------------------------------------------------


def _pairs(values: list[str], what: str) -> dict[str, str]:
    found = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise MlopsError(
                f"{what} {item!r} is not NAME=VALUE", f"write e.g. {what} MLOPS_RELEASES_DIR=/tmp/releases"
            )
        found[name] = value
    return found


def cmd_ci_run(args: argparse.Namespace) -> int:
    from .. import ci_local
    from ..deploy import workflow_variables

    ws = open_cli_workspace(args)
    variables = workflow_variables(ws)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        variables["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
    variables.update(_pairs(args.var, "--var"))
    env: dict[str, str] = {}
    if args.candidate:
        env["CANDIDATE_FILE"] = str(Path(args.candidate).resolve())
    if args.baseline:
        env["BASELINE_FILE"] = str(Path(args.baseline).resolve())
    out = Path(args.out) if args.out else ws.root / "ci-run"
    run = ci_local.run_workflow(args.workflow, repo=args.repo, out=out, variables=variables, env=env, label=args.label)
    if run.conclusion == "success":
        return EXIT_OK
    refused = any(step.exit_code == EXIT_REFUSED for job in run.jobs.values() for step in job.steps)
    return EXIT_REFUSED if refused else EXIT_UNUSABLE


# --------------------------------------------------------------------------------------
# The workflow's steps
# --------------------------------------------------------------------------------------


def cmd_ci_verify_eval_hash(args: argparse.Namespace) -> int:
    from .. import data, gate

    baseline = gate.load_evaluation(args.baseline, "baseline")
    expected = baseline.get("eval_set_hash")
    actual = data.fingerprint(args.data)
    if expected != actual:
        add_summary(f"**Stage 2 failed**: `{args.data}` is `{actual}`, `{args.baseline}` expects `{expected}`.")
        raise MlopsError(
            f"the evaluation set {args.data} has fingerprint {actual}, but {args.baseline} was computed on "
            f"{expected}: every comparison against this baseline would be meaningless",
            "regenerate the baseline in its own pull request (`make baseline`) or fix the evaluation data.",
        )
    print(f"evaluation set {args.data} matches {args.baseline}: {actual}")
    return EXIT_OK


def cmd_ci_candidate(args: argparse.Namespace) -> int:
    from .. import registry
    from ..release import read_candidate

    candidate = read_candidate(args.file, args.model)
    open_cli_workspace(args)
    info = registry.get_version(candidate["model"], candidate["version"])
    outputs = {**{key: str(value) for key, value in candidate.items()}, "model_uri": info.uri}
    for name, value in outputs.items():
        set_output(name, value)
    print(f"candidate {info.uri} (run {info.run_id}) as {candidate['semver']}")
    return EXIT_OK


def cmd_ci_compare(args: argparse.Namespace) -> int:
    from .. import compare_baseline, gate

    baseline = gate.load_evaluation(args.baseline, "baseline")
    candidate = gate.load_evaluation(args.candidate, "candidate")
    report = compare_baseline.compare(candidate, baseline, tolerance=args.tolerance)
    if report.passed:
        line = compare_baseline.summary_line(report, baseline, args.tolerance)
        print(line)
        add_summary(f"**Gate passed.** {line}")
        set_output("verdict", "pass")
        return EXIT_OK
    body = (
        f"### Deploy gate: regression, nothing was promoted\n\n"
        f"{compare_baseline.failure_line(report, args.tolerance)}\n\n{compare_baseline.failure_table(report)}"
    )
    print(body)
    add_summary(body)
    set_output("verdict", "regression")
    set_output("comment", body)
    return EXIT_REFUSED


def cmd_ci_comment(args: argparse.Namespace) -> int:
    body = os.environ.get(args.body_env, "").strip()
    if not body:
        body = args.default
    print(post_comment(body))
    return EXIT_OK


# --------------------------------------------------------------------------------------
# release
# --------------------------------------------------------------------------------------


def _releases_dir(args: argparse.Namespace) -> Path:
    folder = args.releases or os.environ.get("MLOPS_RELEASES_DIR")
    if not folder:
        raise MlopsError(
            "no releases folder given",
            "pass --releases DIR or set MLOPS_RELEASES_DIR (in CI: the repository variable MLOPS_RELEASES_DIR).",
        )
    return Path(folder)


def cmd_release_promote(args: argparse.Namespace) -> int:
    from .. import release

    try:
        mode = release.require_release_mode()
        folder = _releases_dir(args)
        open_cli_workspace(args)
        result = release.promote_release(
            args.model,
            args.version,
            args.semver,
            folder,
            alias=args.alias,
            mode=mode,
            run_id=os.environ.get("GITHUB_RUN_ID"),
        )
    except release.ReleaseRefused as exc:
        print(f"refused: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        set_output("comment", f"### Deploy gate: release refused\n\n{exc.problem}")
        return EXIT_REFUSED
    except MlopsError as exc:  # the comment says why; the CLI prints the error and exits 1
        set_output("comment", f"### Deploy gate: release failed\n\n{exc.problem}")
        raise
    print(result.message)
    comment = (
        f"### Deploy gate: released {result.semver}\n\n`{result.model}` version {result.version} "
        f"({result.sha256}) is now `@{result.alias}`."
        if result.changed
        else f"### Deploy gate: {result.semver} was already released\n\nNothing changed ({result.sha256})."
    )
    add_summary(comment)
    set_output("comment", comment)
    set_output("released", "true" if result.changed else "false")
    return EXIT_OK


def cmd_release_index(args: argparse.Namespace) -> int:
    from .. import release

    print(release.format_index(release.read_index(_releases_dir(args)).entries))
    return EXIT_OK


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add the ``ci`` and ``release`` command groups to the toolkit's CLI."""
    ci = commands.add_parser("ci", help="the deploy gate's steps, and its offline workflow runner")
    sub = ci.add_subparsers(dest="ci_command", required=True)

    p = sub.add_parser("run", help="run a workflow's steps offline (GitHub's files emulated in a folder)")
    p.add_argument("--workflow", default=".github/workflows/deploy-gate.yml")
    p.add_argument("--repo", default=".", help="the checkout the steps run in (default: this folder)")
    p.add_argument("--candidate", help="candidate file to use instead of the workflow's CANDIDATE_FILE")
    p.add_argument("--baseline", help="baseline file to use instead of the workflow's BASELINE_FILE")
    p.add_argument("--out", help="emulation folder (default: <workspace>/ci-run; emptied first)")
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a repository variable (vars.NAME); MLFLOW_TRACKING_URI and MLOPS_RELEASES_DIR default to the workspace's",
    )
    p.add_argument("--label", default="deploy-candidate", help="the label the pull request was given")
    p.set_defaults(func=cmd_ci_run)

    p = sub.add_parser("verify-eval-hash", help="stage 2: the evaluation file is the one the baseline was made on")
    p.add_argument("--baseline", required=True)
    p.add_argument("--data", required=True)
    p.set_defaults(func=cmd_ci_verify_eval_hash)

    p = sub.add_parser("candidate", help="stage 3: read deploy/candidate.json and check the version exists")
    p.add_argument("--file", required=True)
    p.add_argument("--model", required=True, help="the model this workflow gates")
    p.set_defaults(func=cmd_ci_candidate)

    p = sub.add_parser("compare", help="stage 5: per-bucket comparison; exit 2 and a comment body on regression")
    p.add_argument("--candidate", required=True)
    p.add_argument("--baseline", required=True)
    p.add_argument("--tolerance", type=float, default=0.02)
    p.set_defaults(func=cmd_ci_compare)

    p = sub.add_parser("comment", help="comment on the pull request (offline: into the emulation folder)")
    p.add_argument("--body-env", required=True, metavar="NAME", help="environment variable holding the body")
    p.add_argument(
        "--default",
        default="Deploy gate failed before the comparison; see the run's log.",
        help="body to use when that variable is empty",
    )
    p.set_defaults(func=cmd_ci_comment)

    release = commands.add_parser("release", help="semver releases: atomic index files + the MLflow alias")
    sub = release.add_subparsers(dest="release_command", required=True)
    p = sub.add_parser("promote", help="stage 6: release a model version (CI, or MLOPS_ENV=dev with a warning)")
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True, type=int)
    p.add_argument("--semver", required=True)
    p.add_argument("--alias", default="production")
    p.add_argument("--releases", help="releases folder (default: $MLOPS_RELEASES_DIR)")
    p.set_defaults(func=cmd_release_promote)
    p = sub.add_parser("index", help="print the release index")
    p.add_argument("--releases", help="releases folder (default: $MLOPS_RELEASES_DIR)")
    p.set_defaults(func=cmd_release_index)
