"""The lab toolkit: data, training, evaluation, workspaces and the registry.

Import what a notebook needs, e.g. ``from scripts.mlops import data, train, workspace``;
from a shell, ``python -m scripts.mlops --help`` lists the commands.
"""

from .errors import DataError, MlopsError, RegistryError

__all__ = ["DataError", "MlopsError", "RegistryError"]
