"""Per-lab workspaces: one folder holding the lab's data, ``mlflow.db`` and artifacts.

Every lab (and every test) gets its own folder, ``.mlops/<name>/`` below the current
directory by default, so labs never share a registry and model versions start at 1 each run.
MLflow is pointed at ``sqlite:///<relative path>/mlflow.db`` (the embedded default: no
server). ``MLFLOW_TRACKING_URI`` in the environment overrides it, for labs that are about a
tracking server; ``MLOPS_WORKSPACE_ROOT`` moves the parent folder.

Creating an MLflow database runs all of MLflow's schema migrations, which costs seconds. A
migrated empty database is therefore cached once per MLflow version (in
``$XDG_CACHE_HOME/mlops-labs``, else ``~/.cache/mlops-labs``) and copied into new workspaces.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import MlopsError

MARKER = ".mlops-workspace"
_active: "Workspace | None" = None
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
DEFAULT_ROOT = ".mlops"


@dataclass(frozen=True)
class Workspace:
    """Where one lab keeps its state. Paths are relative to the folder the lab runs in."""

    name: str
    root: Path
    tracking_uri: str

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def embedded(self) -> bool:
        """True when MLflow uses this workspace's own SQLite file (no server)."""
        return self.tracking_uri == _sqlite_uri(self.db)

    def experiment(self, name: str) -> str:
        """Create (or reuse) an experiment whose artifacts live in this workspace; return its id."""
        import mlflow

        client = mlflow.MlflowClient()
        found = client.get_experiment_by_name(name)
        if found is not None:
            experiment_id = found.experiment_id
        elif self.embedded:
            experiment_id = client.create_experiment(name, artifact_location=self.artifacts.resolve().as_uri())
        else:  # a tracking server decides where artifacts go
            experiment_id = client.create_experiment(name)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def __str__(self) -> str:
        return f"workspace {self.name!r} at {self.root} (tracking: {self.tracking_uri})"


def _sqlite_uri(db: Path) -> str:
    return f"sqlite:///{db.as_posix()}"


def _display_path(path: Path) -> Path:
    """``path`` relative to the current folder when it is below it, else absolute."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path.resolve()


def quiet_mlflow() -> None:
    """Silence MLflow's and Alembic's INFO chatter and the telemetry client; keep warnings."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow logs every database error with a full traceback before raising it; the raised
    # exception is what callers see (the toolkit turns it into an error with a fix).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlops-labs"


def _template_db() -> Path | None:
    """A migrated, empty MLflow database for the installed MLflow version (None if unavailable)."""
    import mlflow

    template = _cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    if template.is_file():
        return template
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=template.parent) as scratch:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            db = Path(scratch) / "mlflow.db"
            store = SqlAlchemyStore(_sqlite_uri(db), (Path(scratch) / "artifacts").as_uri())
            store.engine.dispose()
            os.replace(db, template)  # atomic: concurrent creators never see half a file
    except (OSError, sqlite3.Error):
        return None
    return template


def _seed_database(db: Path, artifacts: Path) -> None:
    template = _template_db()
    if template is None:
        return  # MLflow creates the database itself on first use (slower, same result)
    shutil.copyfile(template, db)
    with sqlite3.connect(db) as connection:  # the Default experiment must store its artifacts here
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (artifacts.resolve().as_uri(),),
        )


def _forget_cached_stores() -> None:
    """Drop MLflow's cached SQLite stores and connection pools.

    MLflow caches one store (and one SQLAlchemy engine) per tracking URI. A relative
    ``sqlite:///`` URI names a different file after a change of folder, and a workspace that
    is emptied and re-created is a new file behind an old name: either way a cached pooled
    connection would keep reading the old database. This uses MLflow internals (checked by
    the tests), so it degrades to a no-op if they move.
    """
    try:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils
    except ImportError:  # pragma: no cover - depends on MLflow's layout
        return
    for store in (TrackingStore, RegistryStore):
        engines = getattr(store, "_engine_map", {})
        for uri in [uri for uri in engines if uri.startswith("sqlite:")]:
            engines.pop(uri).dispose()
    for registry in (
        getattr(tracking_utils, "_tracking_store_registry", None),
        getattr(registry_utils, "_model_registry_store_registry", None),
    ):
        cached = getattr(type(registry), "_get_store_with_resolved_uri", None) if registry is not None else None
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()


_SQLITE_HEADER = b"SQLite format 3\x00"


def check_database(db: Path) -> None:
    """Refuse a workspace database that is empty or not SQLite, instead of silently replacing it.

    A 0-byte ``mlflow.db`` would otherwise be re-created as an empty registry, hiding the loss
    of every model in it; a file overwritten with something else would fail later with a raw
    SQLAlchemy traceback in every command.
    """
    if not db.exists():
        return
    with db.open("rb") as handle:
        header = handle.read(len(_SQLITE_HEADER))
    if not header:
        raise MlopsError(
            f"the registry database {db} is empty (0 bytes): the models it held are gone, or it was never written",
            "restore mlflow.db from a backup; to start this lab over instead, open the workspace with "
            "open_workspace(..., fresh=True) (or delete the folder yourself).",
        )
    if header != _SQLITE_HEADER:
        raise MlopsError(
            f"the registry database {db} is not an SQLite database (it was overwritten or damaged)",
            "restore mlflow.db from a backup; to start this lab over instead, open the workspace with "
            "open_workspace(..., fresh=True).",
        )


def open_workspace(name: str, *, fresh: bool = True, root: str | Path | None = None) -> Workspace:
    """Create (or reuse) the workspace ``name`` and point MLflow at it.

    ``fresh=True`` (the default for labs) starts from an empty registry, so a re-run of a lab
    gives the same versions and outputs. Only folders this function created (they carry a
    ``.mlops-workspace`` marker) are ever emptied; anything else raises instead.
    """
    import mlflow

    from .registry import fail_fast_defaults

    global _active
    quiet_mlflow()
    fail_fast_defaults()
    if not name or any(part in ("", ".", "..") for part in Path(name).parts) or Path(name).is_absolute():
        raise MlopsError(f"invalid workspace name {name!r}", "use a plain folder name such as '00-first-model'.")
    parent = Path(root if root is not None else os.environ.get("MLOPS_WORKSPACE_ROOT", DEFAULT_ROOT))
    folder = parent / name
    if folder.exists() and not (folder / MARKER).is_file():
        raise MlopsError(
            f"{folder} exists but is not a lab workspace (no {MARKER} marker), so it was left untouched",
            "choose another workspace name or root, or move that folder away.",
        )
    _forget_cached_stores()
    user_env = {key: os.environ.get(key) for key in _URI_VARIABLES}
    override = user_env["MLFLOW_TRACKING_URI"]
    try:
        if fresh and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / MARKER).is_file():  # written once: a read-only workspace can still be read
            (folder / MARKER).write_text("Created by scripts.mlops.workspace; safe to delete.\n")
        (folder / "artifacts").mkdir(exist_ok=True)
        (folder / "data").mkdir(exist_ok=True)
        if not override:
            check_database(folder / "mlflow.db")
            if not (folder / "mlflow.db").exists():
                _seed_database(folder / "mlflow.db", folder / "artifacts")
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise MlopsError(
            f"cannot write the workspace {folder}: {exc.strerror} ({exc.filename})",
            "make the folder writable (check its owner and permissions), or set MLOPS_WORKSPACE_ROOT to a "
            "folder you can write.",
        ) from None
    shown = _display_path(folder)
    workspace_db = shown / "mlflow.db"
    tracking_uri = override or _sqlite_uri(workspace_db)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    # MLflow also exports the URI it was given into os.environ (for child processes). A lab's
    # workspace is this process's choice, so put the environment back: MLFLOW_TRACKING_URI then
    # always means the user's own override, and it never leaks a relative URI into kernels or
    # servers started later (those get the URI explicitly, see server.child_tracking_env).
    for key, value in user_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _active = Workspace(name=name, root=shown, tracking_uri=tracking_uri)
    return _active


def active() -> Workspace | None:
    """The workspace most recently opened in this process, if any."""
    return _active
