"""Read registry snapshots as plain facts (runs in a fresh process after the kernel has exited).

``python -m scripts.grading.probe FOLDER`` prints JSON: for each ``FOLDER/<name>.db`` (the
registry snapshots the runner took right after the check cells that judge facts), for every
registered model in it::

    {"churn-classifier": {
        "version_count": 2,
        "aliases": {"champion": 2},
        "versions": {"1": {"params": {...}, "metrics": {...}, "tags": {...}, "aliases": [...]}},
        "history": [{"alias": "production", "action": "promote", "from": null, "to": 1, "actor": "lab-01"}]}}

plus views derived from them (:func:`_derive`), among them views that find a version by what it
is rather than by its number: ``latest_by_param.<param>.<value>`` (the newest version whose run
has that ``model`` or ``injection`` parameter: ``{"version", "tags", "aliases"}``),
``by_run_name.<run name>`` (``{"tags", "aliases"}`` of the newest version of that run name) and
``alias_run_names`` (``{alias: run name}``). ``reason_figures_by_alias.<alias>`` lists, per
history entry (checkpoints left out), the 4-decimal figures its reason cites, as
``{"0.7829": true}``, so a judgment can ask that a reason cites a number without comparing text.

The database is opened read-only with SQLite alone: no MLflow code (no migrations, no
unpickling) touches a file the student could have crafted. Run ids and timestamps are left
out: they differ on every run, so facts can be compared with the reference solution's.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

HISTORY_PREFIX = "promotion."
#: Run parameters that say what a version is (a training's model family, an injected defect).
IDENTITY_PARAMS = ("model", "injection")
#: The figures a promotion reason cites: numbers with four decimals, as the labs print them.
FIGURE = re.compile(r"(?<![\d.])-?\d+\.\d{4}(?!\d)")


def _rows(db: sqlite3.Connection, query: str, *args: Any) -> list[tuple[Any, ...]]:
    try:
        return db.execute(query, args).fetchall()
    except sqlite3.Error:
        return []


def facts(database: Path) -> dict[str, Any]:
    """Facts about every registered model in ``database`` ({} when there is no database)."""
    if not database.is_file() or database.is_symlink():
        return {}
    db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        models: dict[str, Any] = {}
        for (name,) in _rows(db, "SELECT name FROM registered_models ORDER BY name"):
            models[str(name)] = {"version_count": 0, "aliases": {}, "versions": {}, "history": [], "tags": {}}
        for name, version, run_id in _rows(
            db, "SELECT name, version, run_id FROM model_versions ORDER BY name, version"
        ):
            model = models.setdefault(
                str(name), {"version_count": 0, "aliases": {}, "versions": {}, "history": [], "tags": {}}
            )
            params = dict(_rows(db, "SELECT key, value FROM params WHERE run_uuid = ?", run_id))
            metrics = {
                key: float(value)
                for key, value in _rows(db, "SELECT key, value FROM latest_metrics WHERE run_uuid = ?", run_id)
            }
            names = _rows(db, "SELECT value FROM tags WHERE run_uuid = ? AND key = 'mlflow.runName'", run_id)
            run_name = str(names[0][0]) if names else None
            model["versions"][str(version)] = {
                "params": params,
                "metrics": metrics,
                "tags": {},
                "aliases": [],
                "run_name": run_name,
            }
            model["version_count"] += 1
        for name, version, key, value in _rows(db, "SELECT name, version, key, value FROM model_version_tags"):
            entry = models.get(str(name), {}).get("versions", {}).get(str(version))
            if entry is not None:
                entry["tags"][str(key)] = value
        for name, alias, version in _rows(
            db, "SELECT name, alias, version FROM registered_model_aliases ORDER BY alias"
        ):
            if str(name) in models:
                models[str(name)]["aliases"][str(alias)] = int(version)
                entry = models[str(name)]["versions"].get(str(version))
                if entry is not None:
                    entry["aliases"].append(str(alias))
        for name, key, value in _rows(db, "SELECT name, key, value FROM registered_model_tags ORDER BY key"):
            model = models.get(str(name))
            if model is None:
                continue
            if str(key).startswith(HISTORY_PREFIX):
                model["history"].append(_history(value))
            else:
                model["tags"][str(key)] = value
        for model in models.values():
            _derive(model)
        return models
    finally:
        db.close()


def _derive(model: dict[str, Any]) -> None:
    """Views the judgments use: tags by version, a ranking by accuracy, history per alias, versions by identity.

    ``history_by_alias`` leaves out the moves a lab's checkpoint cells make (their reason starts
    with "checkpoint after"), so a checkpoint never does an exercise for the student.
    """
    versions = model["versions"]
    model["version_tags"] = {number: entry["tags"] for number, entry in versions.items()}
    # Versions found by what they are, not by number (a learner's extra tries shift the numbers):
    # the newest version per value of the params that say what a version is, per run name, and
    # the run name behind each alias.
    in_order = sorted(versions.items(), key=lambda item: int(item[0]))
    latest: dict[str, dict[str, Any]] = {param: {} for param in IDENTITY_PARAMS}
    by_run_name: dict[str, Any] = {}
    for number, entry in in_order:
        summary = {"version": int(number), "tags": entry["tags"], "aliases": sorted(entry["aliases"])}
        for param in IDENTITY_PARAMS:
            if param in entry["params"]:
                latest[param][str(entry["params"][param])] = summary
        if entry.get("run_name"):
            by_run_name[str(entry["run_name"])] = {"tags": entry["tags"], "aliases": sorted(entry["aliases"])}
    model["latest_by_param"] = latest
    model["by_run_name"] = by_run_name
    model["alias_run_names"] = {
        alias: versions.get(str(number), {}).get("run_name") for alias, number in model["aliases"].items()
    }
    scored = [(entry["metrics"].get("accuracy"), entry["params"].get("model")) for entry in versions.values()]
    model["ranking"] = [
        [name, accuracy]
        for accuracy, name in sorted((item for item in scored if isinstance(item[0], float)), key=lambda item: -item[0])
    ]
    by_alias: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, list[dict[str, bool]]] = {}
    for entry in model["history"]:
        if not entry.get("checkpoint"):
            by_alias.setdefault(str(entry.get("alias")), []).append(
                {key: entry.get(key) for key in ("action", "from", "to", "actor", "has_reason")}
            )
            figures.setdefault(str(entry.get("alias")), []).append(dict.fromkeys(entry.get("figures", []), True))
    model["history_by_alias"] = by_alias
    model["reason_figures_by_alias"] = figures


def _history(value: str) -> dict[str, Any]:
    """One promotion-history entry without its timestamp and reason text (only the figures the reason cites)."""
    try:
        raw = json.loads(value)
        return {
            "alias": raw.get("alias"),
            "action": raw.get("action"),
            "from": raw.get("from_version"),
            "to": raw.get("to_version"),
            "actor": raw.get("actor"),
            "has_reason": bool(raw.get("reason")),
            "checkpoint": str(raw.get("reason") or "").startswith("checkpoint after"),
            "figures": sorted(set(FIGURE.findall(str(raw.get("reason") or "")[:1000]))),
        }
    except (ValueError, AttributeError):
        return {"invalid": True}


def main(argv: list[str]) -> int:
    """Facts of every ``*.db`` in the folder, keyed by file stem."""
    folder = Path(argv[0]) if argv else Path(".")
    print(json.dumps({path.stem: facts(path) for path in sorted(folder.glob("*.db"))}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
