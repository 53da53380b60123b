"""Imported once by the warm interpreter of :mod:`scripts.mlops.warm`, before it forks commands.

Only imports: nothing here opens a store, reads the environment or starts a thread (a process
that forks must be single-threaded). The list is what the deploy gate's commands and the model server load lazily.
skops comes first: its import searches every loaded module (see ``cli.common.import_skops_first``).
"""
# ruff: noqa: F401, I001 - imported for their side effect, in this order on purpose

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
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as _RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as _TrackingStore

from . import app, cli, compare_baseline, data, evaluate, gate, registry, release, train, workspace
