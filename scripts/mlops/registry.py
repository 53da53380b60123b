"""The one layer between the toolkit and MLflow's model registry.

Everything that talks to the registry goes through here: the client (with short retry and
timeout settings, so an unreachable tracking server fails in seconds instead of minutes),
the translation of MLflow's and SQLAlchemy's exceptions into :class:`RegistryError` with a
fix, ``models:/`` URIs (formatted and parsed in one place), and the look-ups the labs use.

Model versions move between environments with **aliases** (``models:/NAME@staging``,
``models:/NAME@production``), not with the deprecated stage API.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import MlopsError, RegistryError

if TYPE_CHECKING:  # MLflow is imported lazily: `--help` should not pay for it
    from mlflow import MlflowClient

#: Retry and timeout settings for the toolkit's own registry calls. MLflow's defaults
#: (7 retries with exponential back-off, 120 s timeout) make an unreachable server look like
#: a hang of several minutes. A user's own values in the environment are always kept.
FAIL_FAST_ENV: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
#: Longest name, alias or tag value the toolkit accepts from a user (MLflow's own limits are
#: larger for some fields and smaller for others; one bound keeps every message readable).
MAX_NAME = 200
#: Names are stored as given, but '/', '@' and control characters would break ``models:/`` URIs.
_NAME_PATTERN = re.compile(r"^[^\x00-\x1f\x7f/@]+$")
_ALIAS_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def fail_fast_defaults() -> None:
    """Give MLflow's HTTP client short retries and timeouts unless the user chose their own.

    Called when a workspace is opened; it only fills in variables that are not set, so a
    learner who exports ``MLFLOW_HTTP_REQUEST_TIMEOUT=60`` keeps 60.
    """
    for key, value in FAIL_FAST_ENV.items():
        os.environ.setdefault(key, value)


# --- model URIs ---------------------------------------------------------------------------


def model_uri(name: str, version: int | str | None = None, *, alias: str | None = None) -> str:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` (exactly one of the two)."""
    if (version is None) == (alias is None):
        raise ValueError("pass exactly one of version and alias")
    return f"models:/{name}@{alias}" if alias is not None else f"models:/{name}/{int(version)}"  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI: ``name`` plus a ``version`` or an ``alias`` (or neither)."""

    name: str
    version: int | None = None
    alias: str | None = None


def parse_model_uri(uri: str) -> ModelRef | None:
    """The parts of a ``models:/`` URI; None for other URIs (``runs:/...``, paths).

    Raises :class:`RegistryError` for a ``models:/`` URI whose shape is wrong.
    """
    if not uri.startswith("models:/"):
        return None
    target = uri[len("models:/") :]
    if "@" in target:
        name, alias = target.split("@", 1)
        if name and alias:
            return ModelRef(name, alias=alias)
    elif "/" in target:
        name, version = target.rsplit("/", 1)
        if name and version.isdigit():
            return ModelRef(name, version=int(version))
    elif target:
        return ModelRef(target)
    raise RegistryError(f"bad model URI {uri!r}", "use models:/NAME/VERSION or models:/NAME@ALIAS.")


def promote_hint(name: str, alias: str) -> str:
    """The command that points ``alias`` of ``name`` at a version."""
    return f"python -m scripts.mlops promote --model {name} --version N --alias {alias}"


# --- input bounds -------------------------------------------------------------------------


def check_name(name: str, what: str = "model name") -> str:
    """Refuse names MLflow would store but the toolkit could not query back safely."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_NAME
        or not _NAME_PATTERN.match(name)
        or ("'" in name and '"' in name)  # could not be quoted in a registry search
    ):
        shown = repr(name) if len(str(name)) <= 60 else repr(str(name)[:60]) + "..."
        raise MlopsError(
            f"invalid {what} {shown}",
            f"use a name without '/', '@', control characters or both kinds of quote, at most {MAX_NAME} characters, "
            "e.g. 'churn-classifier'.",
        )
    return name


def check_alias(alias: str) -> str:
    """Refuse aliases MLflow reserves (``latest``, ``v<number>``) or cannot store."""
    if (
        not isinstance(alias, str)
        or len(alias) > MAX_NAME
        or not _ALIAS_PATTERN.match(alias)
        or alias.lower() == "latest"
        or re.fullmatch(r"[vV]\d+", alias)
    ):
        shown = repr(alias) if len(str(alias)) <= 60 else repr(str(alias)[:60]) + "..."
        raise MlopsError(
            f"invalid alias {shown}",
            "use a word such as 'staging' or 'production' (letters, digits, '_' and '-'; "
            "not 'latest' and not 'v<number>', which MLflow reserves).",
        )
    return alias


# --- the client and its errors ------------------------------------------------------------


def _store_uri() -> str:
    import mlflow

    return mlflow.get_registry_uri()


def _first_line(exc: BaseException) -> str:
    text = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def translate(exc: BaseException, doing: str = "use the model registry") -> RegistryError:
    """A :class:`RegistryError` that says what went wrong with the store and how to fix it."""
    uri = _store_uri()
    text = f"{type(exc).__name__}: {exc}"
    if "file is not a database" in text or "database disk image is malformed" in text:
        return RegistryError(
            f"the registry database behind {uri!r} is damaged ({_first_line(exc)})",
            "restore mlflow.db from a backup, or start the lab again in a fresh workspace "
            "(open_workspace(..., fresh=True)); do not delete a registry you still need.",
        )
    if "readonly database" in text or "read-only" in text.lower() or isinstance(exc, PermissionError):
        return RegistryError(
            f"cannot {doing}: the registry store {uri!r} is read-only",
            "make the workspace folder and mlflow.db writable (check their owner and permissions), or work in a copy.",
        )
    if "database is locked" in text:
        return RegistryError(
            f"cannot {doing}: the SQLite registry {uri!r} is locked by another process",
            "wait for the other command to finish and retry; for many concurrent writers use a "
            "tracking server with a PostgreSQL backend.",
        )
    if uri.startswith(("http://", "https://")) and any(
        word in text for word in ("Connection", "Max retries", "timed out", "Timeout", "API request")
    ):
        return RegistryError(
            f"cannot {doing}: the tracking server {uri} does not answer (refused or timed out)",
            "start the server (mlflow server --host 127.0.0.1 --port PORT) or fix MLFLOW_TRACKING_URI; "
            "unset it to use the lab's embedded workspace.",
        )
    return RegistryError(
        f"cannot {doing} at {uri!r}: {_first_line(exc)}",
        "check MLFLOW_TRACKING_URI (or open a lab workspace) and that the tracking store is reachable.",
    )


def _is_not_found(exc: BaseException) -> bool:
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", ""))


@contextlib.contextmanager
def translated(doing: str) -> Iterator[None]:
    """Turn any store failure inside the block into a :class:`RegistryError` for ``doing``."""
    try:
        yield
    except MlopsError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow, SQLAlchemy, requests and OS errors alike
        raise translate(exc, doing) from None


def client() -> "MlflowClient":
    """An ``MlflowClient`` for the current tracking/registry URI."""
    import mlflow

    with translated("open the model registry"):
        return mlflow.MlflowClient()


def _raise_unknown_model(name: str) -> NoReturn:
    known = model_names()
    raise RegistryError(
        f"no registered model named {name!r}; registered models: {known or 'none'}",
        "register a version first (`python -m scripts.mlops train --register NAME`) or fix the name.",
    )


# --- look-ups -----------------------------------------------------------------------------


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
        return model_uri(self.name, self.version)


#: Registered models the toolkit creates for its own bookkeeping (promotion locks) end so.
INTERNAL_SUFFIX = ".promotion-lock"


def model_names() -> list[str]:
    """Names of every registered model, sorted (the toolkit's own lock entries left out)."""
    with translated("list the registered models"):
        names = [model.name for model in client().search_registered_models(max_results=1000)]
    return sorted(name for name in names if not name.endswith(INTERNAL_SUFFIX))


def get_model(name: str) -> Any:
    """The registered model ``name`` (with its tags and aliases); lists the known models if absent."""
    check_name(name)
    found = None
    try:
        found = client().get_registered_model(name)
    except MlopsError:
        raise
    except Exception as exc:  # noqa: BLE001
        if not _is_not_found(exc):
            raise translate(exc, f"read model {name!r}") from None
    if found is None:
        _raise_unknown_model(name)
    return found


def require_model(name: str) -> None:
    """Raise :class:`RegistryError` naming the known models if ``name`` is not registered."""
    get_model(name)


def versions(name: str) -> list[VersionInfo]:
    """Every version of ``name``, oldest first."""
    model = get_model(name)
    by_version: dict[int, list[str]] = {}
    for alias, version in (model.aliases or {}).items():  # search_model_versions leaves aliases empty
        by_version.setdefault(int(version), []).append(alias)
    quoted = f'"{name}"' if "'" in name else f"'{name}'"  # MLflow's filter strings take either quote
    with translated(f"list the versions of {name!r}"):
        found = client().search_model_versions(f"name = {quoted}")
    infos = [
        VersionInfo(
            v.name, int(v.version), v.run_id or "", tuple(sorted(by_version.get(int(v.version), ()))), v.source or ""
        )
        for v in found
    ]
    return sorted(infos, key=lambda info: info.version)


def get_version(name: str, version: int) -> VersionInfo:
    """Version ``version`` of ``name``; the error lists the versions that exist."""
    known = versions(name)
    for info in known:
        if info.version == int(version):
            return info
    raise RegistryError(
        f"model {name!r} has no version {version}; existing versions: {[i.version for i in known] or 'none'}",
        "pick one of the existing versions, or register a new one.",
    )


def current_version(name: str, alias: str) -> int | None:
    """The version ``name@alias`` points at, or None when the alias is not set."""
    aliases = get_model(name).aliases or {}
    return int(aliases[alias]) if alias in aliases else None


def version_for_alias(name: str, alias: str) -> VersionInfo:
    """The version that ``models:/name@alias`` resolves to."""
    found = current_version(name, alias)
    if found is None:
        aliases = sorted(get_model(name).aliases or {})
        raise RegistryError(
            f"model {name!r} has no alias {alias!r}; aliases set: {aliases or 'none'}",
            f"point it at a version first: `{promote_hint(name, alias)}`.",
        )
    return get_version(name, found)


def set_alias(name: str, alias: str, version: int) -> VersionInfo:
    """Point ``alias`` at ``version`` of ``name`` (checking both exist first).

    This moves the alias without recording it; :mod:`scripts.mlops.promotion` is the
    recorded, concurrency-safe way.
    """
    check_alias(alias)
    get_version(name, version)
    with translated(f"set {name}@{alias}"):
        client().set_registered_model_alias(name, alias, str(int(version)))
    return get_version(name, version)


def check_model_uri(uri: str) -> None:
    """Raise :class:`RegistryError` (listing what exists) if a ``models:/`` URI does not resolve.

    ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` and ``models:/NAME`` are checked; other
    URIs (``runs:/...``, paths) are left to MLflow.
    """
    ref = parse_model_uri(uri)
    if ref is None:
        return
    if ref.alias is not None:
        version_for_alias(ref.name, ref.alias)
    elif ref.version is not None:
        get_version(ref.name, ref.version)
    else:
        require_model(ref.name)


def load_model(uri: str, *, check_environment: bool = True) -> Any:
    """``mlflow.pyfunc.load_model(uri)``, with errors that say what exists and what to do.

    ``check_environment=False`` skips MLflow's comparison of the model's pinned requirements
    with the installed packages (a warning, and a scan of every installed distribution): for a
    caller that checks the environment itself, as ``audit`` does.
    """
    import mlflow

    check_model_uri(uri)
    try:
        return mlflow.pyfunc.load_model(uri, suppress_warnings=not check_environment)
    except Exception as exc:  # noqa: BLE001 - a missing run, path or artifact
        raise RegistryError(
            f"cannot load the model {uri!r}: {_first_line(exc)}",
            "pass models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/model or the folder of a saved model; "
            "`python -m scripts.mlops versions --model NAME` lists the registered versions.",
        ) from None
