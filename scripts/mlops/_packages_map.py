"""MLflow's map of installed distributions, built once per environment instead of once per process.

``mlflow.pyfunc.load_model`` compares a model's pinned requirements with the installed packages.
For that MLflow builds a map from top-level module names to the distributions that provide them
(``importlib_metadata.packages_distributions()``): a walk over the file list of every distribution
on ``sys.path``, 0.4 s on the course machine, once per process. Every warm interpreter (the
kernels' zygote, the grader's zygote, the fork server of :mod:`scripts.mlops.warm`) builds it
before it forks, so that its children inherit it, and a student's session or a test run starts
several of them.

:func:`load_or_build` keeps the finished map in a file in the environment's prefix (``.venv``),
under a key made of what the map is computed from: each ``sys.path`` folder that holds
distribution metadata, with the name and modification time of every ``*.dist-info`` and
``*.egg-info`` entry in it. Installing, removing, upgrading or reinstalling a package changes the
key, and the next warm interpreter walks again and rewrites the file. A file that cannot be read
or written (a read-only environment, a damaged file) only means walking, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

#: Where the map is kept: in the environment itself, which is what it describes.
CACHE_NAME = ".mlops-packages-map.json"
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def cache_path() -> Path:
    return Path(sys.prefix) / CACHE_NAME


def environment_key(path: list[str] | None = None) -> str:
    """SHA-256 over each folder of ``path`` (default ``sys.path``) that holds distribution
    metadata: the folder, and the name and modification time of each metadata entry."""
    described = []
    for entry in sys.path if path is None else path:
        folder = Path(entry or os.curdir).resolve()
        try:
            names = sorted(name for name in os.listdir(folder) if name.endswith(_METADATA_SUFFIXES))
            stamped = [(name, (folder / name).stat().st_mtime_ns) for name in names]
        except OSError:
            continue
        if stamped:
            described.append((str(folder), stamped))
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def _read(path: Path, key: str) -> dict[str, list[str]] | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("key") != key:
        return None
    found = document.get("map")
    if not isinstance(found, dict) or not all(
        isinstance(module, str) and isinstance(packages, list) and all(isinstance(p, str) for p in packages)
        for module, packages in found.items()
    ):
        return None
    return found


def _write(path: Path, key: str, mapping: dict[str, list[str]]) -> None:
    """Atomically (a temporary file renamed over the old one): a reader never sees half a file."""
    try:
        handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(handle, "w") as out:
            json.dump({"key": key, "map": mapping}, out)
        os.chmod(temporary, 0o644)  # readable like the rest of the environment (mkstemp makes it 0600)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)


def load_or_build(path: Path | None = None) -> bool:
    """Give MLflow its module-to-distributions map: from the file when its key matches this
    environment, else built by MLflow and written to the file. True when it came from the file."""
    from mlflow.utils import requirements_utils

    if requirements_utils._MODULES_TO_PACKAGES is not None:  # already built in this process
        return False
    path = cache_path() if path is None else path
    key = environment_key()
    kept = _read(path, key)
    if kept is not None:
        requirements_utils._MODULES_TO_PACKAGES = kept  # type: ignore[assignment]  # starts as None
        return True
    requirements_utils._init_modules_to_packages_map()
    built = requirements_utils._MODULES_TO_PACKAGES
    if isinstance(built, dict):
        _write(path, key, {str(module): [str(p) for p in packages] for module, packages in built.items()})
    return False
