"""Evidence for the gate: evaluation documents on disk, and candidates read from the registry.

:func:`collect_evidence` loads a candidate, evaluates it on the frozen set and gathers what
the checks read; :func:`make_baseline` is the evaluation document of the version an alias
points at; :func:`load_evaluation` reads either kind of document from a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import DataError
from .report import Evidence

REQUIRED_KEYS: tuple[str, ...] = ("eval_set_hash", "overall", "buckets")


def load_evaluation(path: str | Path, role: str = "evaluation") -> dict[str, Any]:
    """Read an evaluation document (baseline or candidate); raise MlopsError if unusable.

    Only the document's *shape* is checked here (a JSON object with ``eval_set_hash``,
    ``overall`` and ``buckets``); bad numbers inside it are the checks' business and fail them.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"the {role} file {path} does not exist",
            "check the path; produce a baseline with `python -m scripts.mlops baseline` and a candidate "
            "evaluation with `python -m scripts.mlops evaluate --out FILE`.",
        )
    try:
        document = json.loads(path.read_text())
    except RecursionError:
        raise DataError(
            f"the {role} file {path} is too deeply nested to be an evaluation document",
            "regenerate it with the command that produced it; do not edit it by hand.",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"the {role} file {path} is not valid JSON: {exc}",
            "regenerate it with the command that produced it; do not edit it by hand.",
        ) from None
    if not isinstance(document, dict):
        raise DataError(
            f"the {role} file {path} holds a JSON {type(document).__name__}, not an object",
            'pass an evaluation document: {"eval_set_hash": ..., "overall": ..., "buckets": ...}.',
        )
    missing = [key for key in REQUIRED_KEYS if key not in document]
    if missing:
        raise DataError(
            f"the {role} file {path} is missing key(s) {missing}; found {sorted(document)}",
            f"an evaluation document needs {list(REQUIRED_KEYS)}; regenerate it.",
        )
    for key in ("overall", "buckets"):
        if not isinstance(document[key], dict):
            raise DataError(
                f"the {role} file {path}: {key!r} must be an object, got {type(document[key]).__name__}",
                "regenerate the file.",
            )
    return document


def _signature(uri: str) -> Any:
    import mlflow

    return mlflow.models.get_model_info(uri).signature


def collect_evidence(
    candidate_uri: str,
    data_path: str | Path,
    baseline: Mapping[str, Any] | None,
    *,
    production_uri: str | None = None,
    sample_size: int = 50,
) -> Evidence:
    """Load the candidate, evaluate it on ``data_path`` and gather everything the checks read.

    Unusable input raises :class:`MlopsError` (missing data file, unknown model URI). A
    candidate that cannot be loaded or cannot predict does not raise: the evidence records
    the problem and the checks that need it fail with it. ``production_uri`` defaults to
    ``models:/<baseline model>/<baseline version>``, the version the baseline describes.
    """
    import mlflow

    from .. import data, evaluate

    frame = data.load(data_path)  # unusable data is the caller's problem: raise
    registry.check_model_uri(candidate_uri)
    if production_uri is not None:
        registry.check_model_uri(production_uri)
    elif baseline is not None and baseline.get("model") and baseline.get("version") is not None:
        production_uri = registry.model_uri(str(baseline["model"]), int(baseline["version"]))

    evidence = Evidence(baseline=baseline, sample=data.features(frame).head(sample_size))
    ref = registry.parse_model_uri(candidate_uri)
    name, version = (ref.name, ref.version) if ref is not None else (None, None)
    try:
        evidence.model = mlflow.pyfunc.load_model(candidate_uri)
        evidence.candidate = evaluate.evaluate_file(
            evidence.model, data_path, model=name, version=version, model_uri=candidate_uri
        )
    except Exception as exc:  # noqa: BLE001 - a broken candidate fails the gate, it does not crash it
        evidence.problems["candidate"] = f"the candidate could not be evaluated: {type(exc).__name__}: {exc}"
        evidence.problems.setdefault("model", evidence.problems["candidate"])
    try:
        evidence.candidate_signature = _signature(candidate_uri)
        if evidence.candidate_signature is None:
            evidence.problems["candidate_signature"] = f"{candidate_uri} was logged without a signature"
    except Exception as exc:  # noqa: BLE001
        evidence.problems["candidate_signature"] = f"cannot read the signature of {candidate_uri}: {exc}"
    if production_uri is None:
        evidence.problems["production_signature"] = (
            "no production model to compare with: the baseline names no model/version and no production URI was given"
        )
    else:
        try:
            evidence.production_signature = _signature(production_uri)
            if evidence.production_signature is None:
                evidence.problems["production_signature"] = f"{production_uri} was logged without a signature"
        except Exception as exc:  # noqa: BLE001
            evidence.problems["production_signature"] = (
                f"cannot read the signature of {production_uri} ({exc}); pass --production-uri models:/NAME@production"
            )
    return evidence


def make_baseline(model: str, alias: str, data_path: str | Path) -> dict[str, Any]:
    """The evaluation document of the version ``models:/model@alias`` points at, on ``data_path``."""
    import mlflow

    from .. import evaluate

    info = registry.version_for_alias(model, alias)
    loaded = mlflow.pyfunc.load_model(info.uri)
    document = evaluate.evaluate_file(loaded, data_path, model=model, version=info.version, alias=alias)
    # NumPy string keys print fine but compare oddly; make the document plain JSON data.
    return json.loads(json.dumps(document))
