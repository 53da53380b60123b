"""``python -m scripts.mlops <command>``: the toolkit from a shell.

Every command works in a workspace folder (``--workspace``, default ``.mlops/cli``) unless
``MLFLOW_TRACKING_URI`` points elsewhere. Problems the user can fix print ``error: ...`` with
the fix and exit with status 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Sequence

from .errors import MlopsError

#: Modules that contribute sub-commands through ``add_commands(subparsers)``. A module that
#: does not exist yet is skipped, so each feature owns its commands in its own file.
COMMAND_MODULES: tuple[str, ...] = (
    "scripts.mlops.promotion",
    "scripts.mlops.serve",
    "scripts.mlops.gate",
    "scripts.mlops.inject",
)


def _workspace(args: argparse.Namespace):
    from .workspace import open_workspace

    return open_workspace(args.workspace, fresh=False)


def cmd_data(args: argparse.Namespace) -> int:
    from . import data

    folder = Path(args.out) if args.out else _workspace(args).data_dir
    for name, path in data.write_datasets(folder).items():
        print(f"{name:5s} {path}  {data.fingerprint(path)}")
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from . import data

    for path in args.paths:
        print(f"{data.fingerprint(path)}  {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from . import data, train

    ws = _workspace(args)
    paths = data.write_datasets(ws.data_dir) if not (args.data and args.eval) else {}
    config = train.TrainConfig(model=args.model, seed=args.seed)
    result = train.train_and_log(
        args.data or paths["v1"],
        args.eval or paths["eval"],
        config,
        register=args.register,
        experiment=args.experiment,
    )
    summary = {
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "accuracy": result.accuracy,
        "registered_model": result.registered_name,
        "version": result.version,
        "buckets": result.evaluation["buckets"],
    }
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import mlflow

    from . import evaluate, registry

    _workspace(args)
    if args.model_uri.startswith("models:/"):
        registry.check_model_uri(args.model_uri)
    model = mlflow.pyfunc.load_model(args.model_uri)
    document = evaluate.evaluate_file(model, args.data, model_uri=args.model_uri)
    if args.out:
        evaluate.write_json(document, args.out)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(document, indent=2, sort_keys=True))
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from . import registry

    _workspace(args)
    print(f"{'version':>7}  {'aliases':20s}  run_id")
    for info in registry.versions(args.model):
        print(f"{info.version:>7}  {','.join(info.aliases) or '-':20s}  {info.run_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.mlops", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="cli", help="workspace folder name under .mlops/ (default: cli)")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("data", help="write the seeded churn data files (v1, v2, eval)")
    p.add_argument("--out", help="folder for the CSV files (default: the workspace's data/)")
    p.set_defaults(func=cmd_data)

    p = commands.add_parser("fingerprint", help="print the SHA-256 fingerprint of data files")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_fingerprint)

    p = commands.add_parser("train", help="train, evaluate and log a model (optionally register it)")
    p.add_argument("--data", help="training CSV (default: the workspace's churn_v1.csv)")
    p.add_argument("--eval", help="evaluation CSV (default: the frozen churn_eval.csv)")
    p.add_argument("--model", choices=["logreg", "hgb"], default="logreg")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--experiment", default="churn")
    p.add_argument("--register", metavar="NAME", help="register the model as a new version of NAME")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("evaluate", help="overall and per-slice accuracy of a model, as JSON")
    p.add_argument("--model-uri", required=True, help="models:/NAME/VERSION, models:/NAME@ALIAS or runs:/...")
    p.add_argument("--data", required=True, help="evaluation CSV")
    p.add_argument("--out", help="write the JSON here instead of printing it")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("versions", help="list the versions and aliases of a registered model")
    p.add_argument("--model", required=True)
    p.set_defaults(func=cmd_versions)

    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        add_commands = getattr(module, "add_commands", None)
        if add_commands is not None:
            add_commands(commands)
    from . import ci_commands  # issue 11; moves to scripts/mlops/cli/ at merge

    ci_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MlopsError as exc:
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return 1
