"""Registry look-ups with errors that say what to do: models, versions and aliases.

Model versions move between environments with **aliases** (``models:/NAME@staging``,
``models:/NAME@production``), not with the deprecated stage API.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RegistryError


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, with the aliases that point at it."""

    name: str
    version: int
    run_id: str
    aliases: tuple[str, ...]
    source: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _client():  # imported lazily: `python -m scripts.mlops --help` should not pay for MLflow
    import mlflow

    return mlflow.MlflowClient()


def model_names() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(model.name for model in _client().search_registered_models())


def require_model(name: str) -> None:
    """Raise :class:`RegistryError` naming the known models if ``name`` is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        _client().get_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code):
            raise RegistryError(f"the model registry could not be read: {exc.message}", _tracking_fix()) from None
        known = model_names()
        raise RegistryError(
            f"no registered model named {name!r}; registered models: {known or 'none'}",
            "register a version first (`python -m scripts.mlops train --register NAME`) or fix the name.",
        ) from None


def versions(name: str) -> list[VersionInfo]:
    """Every version of ``name``, oldest first."""
    require_model(name)
    client = _client()
    # search_model_versions does not fill in aliases; the registered model has them all.
    by_version: dict[int, list[str]] = {}
    for alias, version in (client.get_registered_model(name).aliases or {}).items():
        by_version.setdefault(int(version), []).append(alias)
    found = client.search_model_versions(f"name = '{name}'")
    infos = [
        VersionInfo(v.name, int(v.version), v.run_id or "", tuple(sorted(by_version.get(int(v.version), ()))), v.source or "")
        for v in found
    ]
    return sorted(infos, key=lambda info: info.version)


def get_version(name: str, version: int) -> VersionInfo:
    """Version ``version`` of ``name``; the error lists the versions that exist."""
    for info in versions(name):
        if info.version == int(version):
            return info
    existing = [info.version for info in versions(name)]
    raise RegistryError(
        f"model {name!r} has no version {version}; existing versions: {existing or 'none'}",
        "pick one of the existing versions, or register a new one.",
    )


def version_for_alias(name: str, alias: str) -> VersionInfo:
    """The version that ``models:/name@alias`` resolves to."""
    from mlflow.exceptions import MlflowException

    require_model(name)
    try:
        found = _client().get_model_version_by_alias(name, alias)
    except MlflowException:
        aliases = sorted({a for info in versions(name) for a in info.aliases})
        raise RegistryError(
            f"model {name!r} has no alias {alias!r}; aliases set: {aliases or 'none'}",
            f"point it at a version first, e.g. MlflowClient().set_registered_model_alias({name!r}, {alias!r}, VERSION).",
        ) from None
    return get_version(name, int(found.version))


def set_alias(name: str, alias: str, version: int) -> VersionInfo:
    """Point ``alias`` at ``version`` of ``name`` (checking both exist first)."""
    get_version(name, version)
    _client().set_registered_model_alias(name, alias, str(int(version)))
    return get_version(name, version)


def _tracking_fix() -> str:
    return "check MLFLOW_TRACKING_URI (or open a lab workspace) and that the tracking store is reachable."


def check_model_uri(uri: str) -> None:
    """Raise :class:`RegistryError` (listing what exists) if a ``models:/`` URI does not resolve.

    ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` and ``models:/NAME`` are checked; other
    URIs (``runs:/...``, paths) are left to MLflow.
    """
    if not uri.startswith("models:/"):
        return
    target = uri[len("models:/") :]
    if "@" in target:
        name, alias = target.split("@", 1)
        version_for_alias(name, alias)
    elif "/" in target:
        name, version = target.rsplit("/", 1)
        if not version.isdigit():
            raise RegistryError(f"bad model URI {uri!r}", "use models:/NAME/VERSION or models:/NAME@ALIAS.")
        get_version(name, int(version))
    else:
        require_model(target)
