"""Read a saved MLflow model folder without importing MLflow: its ``MLmodel`` file and a skops model.

MLflow's scikit-learn flavor saves the fitted estimator with skops (``serialization_format:
skops``) and names, in the ``MLmodel`` file, the extra types its skops file may contain
(``skops_trusted_types``). :func:`load_skops_model` restores such a model the way MLflow's own
loader does, ``skops.io.load(path, trusted=...)``, and refuses, as MLflow does, when
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is false. Importing MLflow costs over a second; the audit's
re-evaluation and the model server need only this.

:func:`load_model_folder` is the general entry: the skops path when the folder holds such a
model, else ``mlflow.pyfunc.load_model`` (a model of another flavor, e.g. a pyfunc wrapper).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MlopsError

MLMODEL = "MLmodel"


class RestoreError(MlopsError):
    """The saved model cannot be restored (missing, corrupt, untrusted, or loading is forbidden)."""


@dataclass(frozen=True)
class Column:
    """One input column of a model's signature."""

    name: str
    type: str  # MLflow's type name: "double", "long", "string", "boolean"...
    required: bool = True


def read_mlmodel(model_dir: str | Path) -> dict[str, Any]:
    """The parsed ``MLmodel`` file of ``model_dir`` (RestoreError if it cannot be read)."""
    import yaml

    path = Path(model_dir) / MLMODEL
    try:
        meta = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RestoreError(f"{path} cannot be read: {exc}") from None
    if not isinstance(meta, dict):
        raise RestoreError(f"{path} is not a YAML mapping")
    return meta


def skops_flavor(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The ``sklearn`` flavor of a parsed MLmodel when it is saved with skops, else None."""
    flavor = (meta.get("flavors") or {}).get("sklearn")
    if isinstance(flavor, dict) and flavor.get("serialization_format") == "skops":
        return flavor
    return None


def input_columns(meta: dict[str, Any]) -> list[Column] | None:
    """The named input columns of the signature in a parsed MLmodel; None without one."""
    inputs = (meta.get("signature") or {}).get("inputs")
    if not inputs:
        return None
    try:
        specs = json.loads(inputs) if isinstance(inputs, str) else inputs
        columns = [Column(str(s["name"]), str(s["type"]), bool(s.get("required", True))) for s in specs]
    except (ValueError, TypeError, KeyError):
        return None  # a tensor signature or an unknown layout: no named columns
    return columns or None


def pickle_forbidden() -> bool:
    """True when ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` forbids loading serialized models."""
    return os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").strip().lower() in ("false", "0")


def load_skops_model(model_dir: str | Path, flavor: dict[str, Any]) -> Any:
    """Restore the skops-saved estimator of ``model_dir`` with the trusted types its flavor names."""
    if pickle_forbidden():
        raise RestoreError(
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false, so neither MLflow nor this toolkit loads a serialized model"
        )
    import skops.io

    path = Path(model_dir) / str(flavor.get("pickled_model") or "model.skops")
    try:
        return skops.io.load(path, trusted=flavor.get("skops_trusted_types"))
    except Exception as exc:  # noqa: BLE001 - a missing, corrupt or untrusted file
        raise RestoreError(f"skops cannot load {path.name}: {type(exc).__name__}: {exc}") from None


def load_model_folder(model_dir: str | Path) -> Any:
    """Restore the model in ``model_dir``: skops for a skops-saved scikit-learn model, else MLflow's pyfunc."""
    model_dir = Path(model_dir).resolve()
    flavor = skops_flavor(read_mlmodel(model_dir))
    if flavor is not None:
        return load_skops_model(model_dir, flavor)
    from . import registry

    try:  # The environment is a question of its own (the audit's check_lock_supports_artifact).
        return registry.load_model(str(model_dir), check_environment=False)
    except MlopsError as exc:
        raise RestoreError(str(exc).splitlines()[0]) from None
