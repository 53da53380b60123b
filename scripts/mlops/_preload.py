"""Imported once by the warm interpreter of :mod:`scripts.mlops.warm`, before it forks commands.

Imports, one read-only scan and three values kept for every command (the command line's parser,
the seeded data files' bytes and MLflow's schema revision): nothing here opens a store, reads the
environment or starts a thread (a process that forks must be single-threaded). The list is what
the deploy gate's commands and the model server load lazily. skops comes first: its import
searches every loaded module (see ``cli.common.import_skops_first``).

The scan is MLflow's map of installed distributions, which ``mlflow.pyfunc.load_model`` builds on
first use to compare a model's pinned requirements with the installed packages: a walk over every
file of every distribution in site-packages, over a second per model load on the course machine.
MLflow keeps it in a module global, so every forked command inherits it; the children share this
interpreter's site-packages (a command with another ``PYTHONPATH`` gets a fresh interpreter). The
scan runs once per environment, not once per warm interpreter: its result is kept in the
environment (:mod:`scripts.mlops._packages_map`) until a package is installed or removed.

One value is computed here and kept: the newest schema revision of MLflow's bundled database
migrations. MLflow compares it with a database's revision every time it opens a SQLite store, and
recomputes it each time by loading all of its migration scripts (about 30 ms on the course
machine, in each of the deploy gate's steps that reads the registry). It is a constant of the
installed MLflow, so the warm interpreter caches it and every forked command inherits the cache.
"""
# ruff: noqa: F401, I001 - imported for their side effect, in this order on purpose

import functools

import skops.io
import sklearn.ensemble
import sklearn.pipeline
import pandas
import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import fastapi
import pydantic
import uvicorn
import uvicorn.loops.uvloop
import uvicorn.protocols.http.httptools_impl
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as _RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as _TrackingStore

# What opening a SQLite store and scoring a DataFrame import on first use (measured per command).
import alembic.command
import alembic.config
import encodings.cp437
import mlflow.store.model_registry.sqlalchemy_workspace_store
import mlflow.store.tracking.sqlalchemy_workspace_store
import mlflow.tracing.export.utils
import mlflow.tracing.processor.base_mlflow
import mlflow.tracing.processor.otel
import mlflow.tracing.utils.environment
import narwhals._interchange.dataframe
import narwhals._pandas_like.dataframe
import narwhals._pandas_like.namespace
import narwhals.stable.v2
import narwhals.stable.v2._namespace
import opentelemetry.sdk.metrics
import pyarrow.pandas_compat
import pyarrow.vendored.version
import sqlalchemy.dialects.sqlite

from . import app, baseline_refresh, ci_local, cli, compare_baseline, data, evaluate, gate, promotion, registry, release
from . import fastpath, model_files, train, workspace

cli.build_parser()  # kept (functools.cache): forked commands parse with it
for _batch in data.FILENAMES:  # kept (functools.cache): every lab workspace writes these files
    data.batch_csv(_batch)

try:  # MLflow internals: if they move, each command builds the map itself (slower, same result)
    from . import _packages_map

    _packages_map.load_or_build()  # from the environment's kept copy when nothing was installed since
except (ImportError, AttributeError):  # pragma: no cover - depends on MLflow's layout
    pass

try:  # MLflow internals: if they move, each store computes the revision itself (slower, same result)
    from mlflow.store.db import utils as _db_utils

    _latest_schema_revision = _db_utils._get_latest_schema_revision
except (ImportError, AttributeError):  # pragma: no cover - depends on MLflow's layout
    pass
else:
    _db_utils._get_latest_schema_revision = functools.cache(_latest_schema_revision)
    _db_utils._get_latest_schema_revision()
