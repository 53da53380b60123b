"""Release promotion: a semver-tagged release index on disk, and the MLflow alias, moved together.

A release is a registered model version, named by a semantic version and identified by the
**canonical SHA-256 of its files** (see :func:`canonical_sha`). Two files in a releases folder
record them:

* ``tags.json`` -- ``{"v1.2.0": "sha256:..."}``: which bytes each semver names;
* ``index.jsonl`` -- one JSON line per release, oldest first, never rewritten.

:func:`promote_release` writes both files, then points ``model@alias`` at the version through
:func:`scripts.mlops.promotion.promote` (so the move is in the promotion history too) and tags
the version ``release.<semver>``. The rules:

* **atomic**: each file is replaced as a whole (temp file, fsync, rename, fsync of the folder),
  all under an exclusive lock (``fcntl.flock`` on ``.lock``), so a reader sees the old or the
  new index, never half of one, and two promotions never interleave;
* **both halves or neither**: the files are written first; if the MLflow half fails they are put
  back as they were and the error says so (the registry is left as it was, or as far as MLflow
  allows: see :class:`ReleaseError`);
* **idempotent** on (canonical SHA, semver): releasing the same bytes under the same semver
  again changes nothing, so a re-run CI job never promotes twice;
* **a semver names one set of bytes**: reusing it for different bytes is refused
  (:class:`ReleaseRefused`); there is no ``--force``.

Who may promote is decided by :func:`require_release_mode`: CI (``GITHUB_ACTIONS=true``), or a
developer who opts into ``MLOPS_ENV=dev`` and is warned that production promotion is CI's.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .errors import MlopsError
from .files import fsync_dir, write_atomic

TAGS_FILE = "tags.json"
INDEX_FILE = "index.jsonl"
LOCK_FILE = ".lock"
DEFAULT_LOCK_TIMEOUT = 60.0
_SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_SHA = re.compile(r"^sha256:[0-9a-f]{64}$")
Mode = Literal["ci", "dev"]
DEV_WARNING = (
    "warning: MLOPS_ENV=dev: this is a local developer release into the registry MLflow points at. "
    "Production promotion is CI's job (the deploy-gate workflow); there is no third path."
)


class ReleaseRefused(MlopsError):
    """The release contradicts the index (a semver reused for other bytes) or is not allowed here."""


class ReleaseError(MlopsError):
    """The release could not be completed; the message says what state it left behind."""


@dataclass(frozen=True)
class ReleaseEntry:
    """One line of ``index.jsonl``."""

    seq: int
    semver: str
    sha256: str
    model: str
    version: int
    alias: str
    actor: str
    at: str
    source: Mode
    run_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class ReleaseResult:
    """What :func:`promote_release` did; ``entry`` is None when the release already existed."""

    semver: str
    sha256: str
    model: str
    version: int
    alias: str
    entry: ReleaseEntry | None
    alias_message: str

    @property
    def changed(self) -> bool:
        return self.entry is not None

    @property
    def message(self) -> str:
        if self.entry is None:
            return (
                f"{self.semver} is already released as {self.sha256[:19]}... ({self.model} version "
                f"{self.version}); nothing changed"
            )
        return (
            f"released {self.semver} = {self.model} version {self.version} ({self.sha256[:19]}...), "
            f"index entry #{self.entry.seq}; {self.alias_message}"
        )


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def normalize_semver(semver: str) -> str:
    """``1.2.3`` or ``v1.2.3`` -> ``v1.2.3``; anything else is refused (no pre-release suffixes)."""
    match = _SEMVER.match(str(semver).strip())
    if not match:
        raise MlopsError(
            f"{semver!r} is not a semantic version",
            "use MAJOR.MINOR.PATCH, e.g. v1.2.0 (digits only, no leading zeros).",
        )
    return "v" + ".".join(match.groups())


def canonical_sha(folder: str | Path) -> str:
    """SHA-256 over every file below ``folder``: sorted relative paths, each with its content's hash.

    Independent of file times, permissions and the order the file system lists them in.
    """
    root = Path(folder)
    if not root.is_dir():
        raise MlopsError(f"{root} is not a folder of model files", "pass the folder a model was downloaded to.")
    manifest = hashlib.sha256()
    files = sorted(path for path in root.rglob("*") if path.is_file())
    if not files:
        raise MlopsError(f"{root} holds no files", "download the model's artifacts first.")
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        manifest.update(f"{path.relative_to(root).as_posix()}\0{digest}\n".encode())
    return "sha256:" + manifest.hexdigest()


def model_sha(model: str, version: int) -> str:
    """The canonical SHA-256 of ``models:/model/version``'s files (downloaded to a temp folder)."""
    import mlflow

    from . import registry

    registry.get_version(model, int(version))
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        local = mlflow.artifacts.download_artifacts(artifact_uri=registry.model_uri(model, version), dst_path=scratch)
        return canonical_sha(local)


def require_release_mode(environ: dict[str, str] | None = None) -> Mode:
    """``"ci"`` inside GitHub Actions, ``"dev"`` with ``MLOPS_ENV=dev`` (after a warning); else refuse."""
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS") == "true":
        return "ci"
    if env.get("MLOPS_ENV") == "dev":
        print(DEV_WARNING, file=sys.stderr)
        return "dev"
    raise ReleaseRefused(
        "releases are promoted by CI (the deploy-gate workflow), and this is not a CI run",
        "open a pull request that changes deploy/candidate.json and label it deploy-candidate; to try the "
        "promotion on your own registry, set MLOPS_ENV=dev (local developer mode) and run the command again.",
    )


# --------------------------------------------------------------------------------------
# The release index on disk
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseIndex:
    """The files of one releases folder, read at one moment."""

    tags: dict[str, str]
    entries: list[ReleaseEntry]


def _restore(path: Path, old: str | None) -> None:
    if old is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fsync_dir(path.parent)
    else:
        write_atomic(path, old)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def read_index(folder: str | Path) -> ReleaseIndex:
    """Parse ``tags.json`` and ``index.jsonl`` (missing files are empty); refuse corrupt ones."""
    folder = Path(folder)
    tags_text = _read_text(folder / TAGS_FILE)
    index_text = _read_text(folder / INDEX_FILE) or ""
    try:
        tags = json.loads(tags_text) if tags_text else {}
        entries = [ReleaseEntry(**json.loads(line)) for line in index_text.splitlines() if line.strip()]
    except (ValueError, TypeError) as exc:
        raise MlopsError(
            f"the release index in {folder} is corrupt: {exc}",
            "restore tags.json / index.jsonl from a backup; they are written only by release promotion.",
        ) from None
    if not isinstance(tags, dict) or not all(isinstance(v, str) and _SHA.match(v) for v in tags.values()):
        raise MlopsError(f"{folder / TAGS_FILE} is not a semver -> sha256 mapping", "restore it from a backup.")
    return ReleaseIndex(tags, entries)


@contextlib.contextmanager
def locked(folder: str | Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[Path]:
    """Hold the releases folder's exclusive lock (``fcntl.flock``), waiting up to ``timeout`` seconds."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ReleaseError(
                        f"another release promotion has held {folder / LOCK_FILE} for over {timeout:g} s",
                        "wait for it to finish (CI's concurrency group runs one gate per model) and re-run.",
                    ) from None
                time.sleep(0.05)
        try:
            yield folder
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------
# Promotion
# --------------------------------------------------------------------------------------


def _mlflow_half(model: str, version: int, alias: str, semver: str, sha: str, actor: str) -> str:
    """Tag the version with its release, then move the alias (the commit point). Returns the alias message.

    :func:`scripts.mlops.promotion.promote` is one transaction: when it raises, the alias and
    the promotion history are unchanged, so only the release tag has to be taken back.
    """
    from . import promotion, registry

    client = registry.client()
    with registry.translated(f"tag {model} version {version} as release {semver}"):
        client.set_model_version_tag(model, str(version), f"release.{semver}", sha)
    try:
        result = promotion.promote(model, version, alias, actor=actor, reason=f"release {semver} ({sha[:19]}...)")
    except BaseException:
        with contextlib.suppress(Exception):  # best effort: the tag alone promotes nothing
            client.delete_model_version_tag(model, str(version), f"release.{semver}")
        raise
    return result.message


def _version_tag(model: str, version: int, semver: str) -> str | None:
    from . import registry

    with registry.translated(f"read {model} version {version}"):
        found = registry.client().get_model_version(model, str(version))
    return (found.tags or {}).get(f"release.{semver}")


def promote_release(
    model: str,
    version: int,
    semver: str,
    releases: str | Path,
    *,
    alias: str = "production",
    mode: Mode,
    actor: str | None = None,
    run_id: str | None = None,
    sha: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    clock: Callable[[], datetime] | None = None,
) -> ReleaseResult:
    """Release ``models:/model/version`` as ``semver``: index files first, then the MLflow alias.

    ``sha`` skips downloading the model to hash it (tests); ``mode`` comes from
    :func:`require_release_mode`. Raises :class:`ReleaseRefused` for a semver already naming other
    bytes, :class:`ReleaseError` when the MLflow half failed (the files are rolled back).
    """
    semver = normalize_semver(semver)
    version = int(version)
    sha = sha or model_sha(model, version)
    actor = actor or os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    folder = Path(releases)
    with locked(folder, lock_timeout):
        index = read_index(folder)
        released = index.tags.get(semver)
        if released is not None and released != sha:
            first = next((e for e in index.entries if e.semver == semver), None)
            where = f" ({first.model} version {first.version}, {first.at})" if first else ""
            raise ReleaseRefused(
                f"{semver} is already released as {released}{where}; {model} version {version} is {sha}",
                "a semver names one set of bytes forever: give this candidate a new semver in deploy/candidate.json.",
            )
        if released == sha:
            entry = next((e for e in index.entries if e.semver == semver), None)
            if entry is None:
                raise MlopsError(
                    f"tags.json in {folder} names {semver} but index.jsonl has no line for it",
                    "the two files were edited by hand; restore them from a backup.",
                )
            if _version_tag(entry.model, entry.version, semver) == sha:
                return ReleaseResult(semver, sha, entry.model, entry.version, entry.alias, None, "alias unchanged")
            # The files say released but the MLflow half never happened (a crash between the two):
            # finish it rather than report a release the registry does not know.
            message = _mlflow_half(entry.model, entry.version, entry.alias, semver, sha, actor)
            return ReleaseResult(semver, sha, entry.model, entry.version, entry.alias, None, message)

        at = (clock or (lambda: datetime.now(UTC)))().astimezone(UTC).isoformat(timespec="seconds")
        entry = ReleaseEntry(
            seq=len(index.entries) + 1,
            semver=semver,
            sha256=sha,
            model=model,
            version=version,
            alias=alias,
            actor=actor,
            at=at,
            source=mode,
            run_id=run_id,
        )
        tags_path, index_path = folder / TAGS_FILE, folder / INDEX_FILE
        old_tags, old_index = _read_text(tags_path), _read_text(index_path)
        write_atomic(index_path, (old_index or "") + entry.to_json() + "\n")
        try:
            write_atomic(tags_path, json.dumps({**index.tags, semver: sha}, indent=2, sort_keys=True) + "\n")
            message = _mlflow_half(model, version, alias, semver, sha, actor)
        except Exception as exc:
            _restore(tags_path, old_tags)
            _restore(index_path, old_index)
            detail = (getattr(exc, "problem", None) or str(exc) or type(exc).__name__).strip().splitlines()[0][:300]
            raise ReleaseError(
                f"the MLflow half of releasing {semver} failed ({detail}); tags.json and index.jsonl were "
                f"rolled back, so nothing was released and {model}@{alias} was not moved",
                "fix the registry problem and re-run the same command (it is idempotent).",
            ) from exc
        return ReleaseResult(semver, sha, model, version, alias, entry, message)


def format_index(entries: list[ReleaseEntry]) -> str:
    """A plain-text table of the index (for the CLI and notebooks)."""
    if not entries:
        return "(no releases)"
    rows = [("#", "semver", "model", "version", "alias", "sha256", "source", "at")]
    rows += [
        (str(e.seq), e.semver, e.model, str(e.version), e.alias, e.sha256[:19] + "...", e.source, e.at) for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def index_lines(folder: str | Path) -> list[dict[str, Any]]:
    """The raw JSON objects of ``index.jsonl`` (for tests and the lab's manifest)."""
    return [asdict(entry) for entry in read_index(folder).entries]


# --- the candidate declaration (deploy/candidate.json) ------------------------------------

CANDIDATE_KEYS = {"model", "version", "semver", "note"}
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def read_candidate(path: str | Path, model: str | None = None) -> dict[str, Any]:
    """The committed candidate declaration, checked: ``{"model", "version", "semver"[, "note"]}``."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise MlopsError(f"no candidate file {path}", "commit deploy/candidate.json in the pull request.") from None
    except ValueError as exc:
        raise MlopsError(f"{path} is not valid JSON: {exc}", "fix the file.") from None
    example = '{"model": "churn-classifier", "version": 2, "semver": "v1.1.0"}'
    if not isinstance(document, dict) or not {"model", "version", "semver"} <= set(document):
        raise MlopsError(f"{path} must name model, version and semver", f"write e.g. {example}")
    unknown = sorted(set(document) - CANDIDATE_KEYS)
    if unknown:
        raise MlopsError(f"{path} has unknown keys {unknown}", f"use only {sorted(CANDIDATE_KEYS)}.")
    name, version = document["model"], document["version"]
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise MlopsError(f"{path}: model {name!r} is not a registered-model name", f"write e.g. {example}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise MlopsError(f"{path}: version {version!r} is not a model version number", f"write e.g. {example}")
    if model is not None and name != model:
        raise MlopsError(
            f"{path} declares model {name!r}, but this workflow gates {model!r}",
            "each model has its own gate workflow (and concurrency group); fix the model name.",
        )
    return {"model": name, "version": version, "semver": normalize_semver(document["semver"])}
