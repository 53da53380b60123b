"""Imported once by the warm interpreter of :mod:`scripts.mlops.warm`, before it forks commands.

Only imports: nothing here opens a store, reads the environment or starts a thread (a process
that forks must be single-threaded). The list is what the deploy gate's commands load lazily.
"""

import mlflow  # noqa: F401
import mlflow.pyfunc  # noqa: F401
import mlflow.sklearn  # noqa: F401
import pandas  # noqa: F401
import sklearn.ensemble  # noqa: F401
import sklearn.pipeline  # noqa: F401
import skops.io  # noqa: F401
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as _RegistryStore  # noqa: F401
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as _TrackingStore  # noqa: F401

from . import cli, compare_baseline, data, evaluate, gate, registry, release, train, workspace  # noqa: F401
