"""``train``, ``evaluate``, ``versions``, ``promote``, ``rollback``, ``history``: models in the registry."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import bounded_text, import_skops_first, open_cli_workspace, positive_int


def cmd_train(args: argparse.Namespace) -> int:
    from .. import data, train

    ws = open_cli_workspace(args)
    paths = data.write_datasets(ws.data_dir) if not (args.data and args.eval) else {}
    if args.register is not None:
        from ..registry import check_name

        check_name(args.register)
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
    import_skops_first()
    from .. import evaluate, registry

    open_cli_workspace(args)
    model = registry.load_model(args.model_uri)
    document = evaluate.evaluate_file(model, args.data, model_uri=args.model_uri)
    if args.out:
        evaluate.write_json(document, args.out)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(document, indent=2, sort_keys=True))
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from .. import registry

    open_cli_workspace(args)
    found = registry.versions(args.model)
    print(f"{'version':>7}  {'aliases':20s}  run_id")
    for info in found:
        print(f"{info.version:>7}  {','.join(info.aliases) or '-':20s}  {info.run_id}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from .. import promotion

    open_cli_workspace(args)
    print(promotion.promote(args.model, args.version, args.alias, actor=args.actor, reason=args.reason).message)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from .. import promotion

    open_cli_workspace(args)
    print(promotion.rollback(args.model, args.alias, actor=args.actor, reason=args.reason).message)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from .. import promotion

    open_cli_workspace(args)
    print(promotion.format_history(promotion.history(args.model, args.alias)))
    return 0


def register(commands: Any) -> None:
    from ..promotion import MAX_ACTOR, MAX_REASON

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

    who = {"help": "who (default: your login name)", "type": bounded_text(MAX_ACTOR)}
    why = {"help": "why (stored in the promotion history)", "type": bounded_text(MAX_REASON)}
    p = commands.add_parser("promote", help="point an alias (staging, production, ...) at a model version")
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True, type=positive_int)
    p.add_argument("--alias", required=True)
    p.add_argument("--reason", **why)
    p.add_argument("--actor", **who)
    p.set_defaults(func=cmd_promote)

    p = commands.add_parser("rollback", help="move an alias back to where it was before its latest promotion")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", required=True)
    p.add_argument("--reason", **why)
    p.add_argument("--actor", **who)
    p.set_defaults(func=cmd_rollback)

    p = commands.add_parser("history", help="the promotion history of a model, oldest first")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", help="only this alias")
    p.set_defaults(func=cmd_history)
