"""Move registry aliases between versions, with an append-only promotion history.

MLflow records where an alias points *now*, not where it pointed before, so this module keeps
the history itself, **in the registry**: one registered-model tag per change, so it works the
same with the embedded SQLite store and with a tracking server::

    promotion.000001 = {"seq": 1, "alias": "production", "from_version": null, "to_version": 1,
                        "actor": "ana", "at": "2026-01-05T10:00:00+00:00",
                        "action": "promote", "reason": "first release"}

Entries are only ever added, never rewritten (each write is read back, and a clash with a
concurrent writer moves the entry to the next free number).

Rules:

* :func:`promote` is idempotent: promoting the version an alias already points at changes
  nothing and records nothing.
* :func:`rollback` *undoes* the alias's latest promotion that has not been undone yet, like an
  undo stack: after promotions v1 -> v2 -> v3, rollbacks go to v2, then to v1, then refuse
  (nothing was before v1). A rollback is recorded as a new ``"rollback"`` entry. A new
  promotion after a rollback starts a new branch, exactly as an editor's undo does.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Sequence

from . import registry
from .errors import MlopsError, RegistryError

TAG_PREFIX = "promotion."
_TAG_PATTERN = re.compile(r"^promotion\.(\d+)$")
_ALIAS_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_REASON = 1000
Action = Literal["promote", "rollback"]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class PromotionEntry:
    """One recorded alias move."""

    seq: int
    alias: str
    from_version: int | None
    to_version: int
    actor: str
    at: str  # UTC, ISO 8601
    action: Action
    reason: str | None = None

    @property
    def tag(self) -> str:
        """The registered-model tag that stores this entry."""
        return f"{TAG_PREFIX}{self.seq:06d}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PromotionEntry":
        raw = json.loads(text)
        return cls(
            seq=int(raw["seq"]),
            alias=str(raw["alias"]),
            from_version=None if raw.get("from_version") is None else int(raw["from_version"]),
            to_version=int(raw["to_version"]),
            actor=str(raw.get("actor", "")),
            at=str(raw.get("at", "")),
            action=raw.get("action", "promote"),
            reason=raw.get("reason"),
        )


@dataclass(frozen=True)
class PromotionResult:
    """What :func:`promote` or :func:`rollback` did. ``entry`` is None when nothing changed."""

    model: str
    alias: str
    version: int
    previous: int | None
    entry: PromotionEntry | None

    @property
    def changed(self) -> bool:
        return self.entry is not None

    @property
    def message(self) -> str:
        if self.entry is None:
            return f"{self.model}@{self.alias} already points at version {self.version}; nothing changed"
        verb = "rolled back" if self.entry.action == "rollback" else "moved"
        before = "unset" if self.previous is None else f"version {self.previous}"
        return f"{self.model}@{self.alias} {verb} from {before} to version {self.version} (entry #{self.entry.seq})"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _registry_error(exc: Exception) -> RegistryError:
    import mlflow

    first_line = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0][:300]
    return RegistryError(
        f"the model registry at {mlflow.get_registry_uri()!r} cannot be used: {first_line}",
        "point MLflow at a store with a model registry: open a lab workspace "
        "(open_workspace(...), a sqlite:/// database) or set MLFLOW_TRACKING_URI to a running "
        "tracking server (http://HOST:PORT).",
    )


def _client():
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient()
    except MlflowException as exc:
        raise _registry_error(exc) from None


def _require_model(model: str) -> Any:
    """The registered model ``model`` (with its tags); RegistryError listing known models if absent."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        return client.get_registered_model(model)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code):
            raise _registry_error(exc) from None
    registry.require_model(model)  # raises the "no registered model named ..., registered models: [...]" error
    raise RegistryError(f"no registered model named {model!r}")  # pragma: no cover - require_model raised


def _check_alias(alias: str) -> None:
    if not _ALIAS_PATTERN.match(alias or "") or alias.lower() == "latest" or re.fullmatch(r"v\d+", alias):
        raise MlopsError(
            f"invalid alias {alias!r}",
            "use a word such as 'staging' or 'production' (letters, digits, '_' and '-'; "
            "not 'latest' and not 'v<number>', which MLflow reserves).",
        )


def _entries(tags: dict[str, str]) -> list[PromotionEntry]:
    found = []
    for key, value in tags.items():
        if _TAG_PATTERN.match(key):
            try:
                found.append(PromotionEntry.from_json(value))
            except (ValueError, KeyError, TypeError):
                raise RegistryError(
                    f"promotion history tag {key!r} is not a valid entry: {value[:200]!r}",
                    "history tags are written by scripts.mlops.promotion only; restore or delete that tag.",
                ) from None
    return sorted(found, key=lambda entry: entry.seq)


def history(model: str, alias: str | None = None) -> list[PromotionEntry]:
    """Every recorded alias move of ``model`` (only ``alias``'s when given), oldest first."""
    entries = _entries(dict(_require_model(model).tags or {}))
    return [entry for entry in entries if alias is None or entry.alias == alias]


def _current(model: str, alias: str) -> int | None:
    """The version ``model@alias`` points at, or None when the alias is not set."""
    aliases = getattr(_require_model(model), "aliases", None) or {}
    return int(aliases[alias]) if alias in aliases else None


def _append(model: str, entry: PromotionEntry) -> PromotionEntry:
    """Write ``entry`` under a tag nobody has used; re-number it if a concurrent writer took its slot."""
    from mlflow.exceptions import MlflowException

    client = _client()
    for _ in range(20):
        taken = {e.seq for e in history(model)}
        if entry.seq in taken:
            entry = PromotionEntry(**{**asdict(entry), "seq": max(taken) + 1})
            continue
        try:
            client.set_registered_model_tag(model, entry.tag, entry.to_json())
            stored = client.get_registered_model(model).tags.get(entry.tag)
        except MlflowException as exc:
            raise _registry_error(exc) from None
        if stored == entry.to_json():
            return entry
        # Another writer used the same number at the same moment: take the next one. Its entry
        # was written after ours, so ours is re-written (as the next number), never lost.
    raise RegistryError(
        f"could not record the promotion of {model}@{entry.alias} (too many concurrent writers)",
        "retry the command; the alias itself has already moved.",
    )


def _move(
    model: str,
    alias: str,
    version: int,
    previous: int | None,
    action: Action,
    actor: str | None,
    reason: str | None,
    clock: Clock | None,
) -> PromotionResult:
    from mlflow.exceptions import MlflowException

    if reason is not None and len(reason) > MAX_REASON:
        raise MlopsError(f"the reason is {len(reason)} characters long", f"keep it under {MAX_REASON} characters.")
    at = (clock or _utc_now)().astimezone(timezone.utc).isoformat(timespec="seconds")
    seq = max((e.seq for e in history(model)), default=0) + 1
    entry = PromotionEntry(
        seq=seq,
        alias=alias,
        from_version=previous,
        to_version=version,
        actor=actor or getpass.getuser(),
        at=at,
        action=action,
        reason=reason,
    )
    try:  # the alias is the truth, so it moves first; the history records what happened
        _client().set_registered_model_alias(model, alias, str(version))
    except MlflowException as exc:
        raise _registry_error(exc) from None
    return PromotionResult(model, alias, version, previous, _append(model, entry))


def promote(
    model: str,
    version: int,
    alias: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    clock: Clock | None = None,
) -> PromotionResult:
    """Point ``model@alias`` at ``version`` and record the move.

    Idempotent: if the alias already points at ``version``, nothing is changed or recorded
    (the result's ``changed`` is False). ``actor`` defaults to the login name; ``clock``
    (returning an aware datetime) is for tests.
    """
    _check_alias(alias)
    _require_model(model)
    registry.get_version(model, int(version))  # lists the existing versions if it does not exist
    previous = _current(model, alias)
    if previous == int(version):
        return PromotionResult(model, alias, int(version), previous, None)
    return _move(model, alias, int(version), previous, "promote", actor, reason, clock)


def rollback_target(model: str, alias: str) -> PromotionEntry:
    """The entry a rollback of ``alias`` would undo (the latest one not undone yet)."""
    entries = history(model, alias)
    if not entries:
        raise RegistryError(
            f"{model}@{alias} has no promotion history, so there is nothing to roll back to",
            f"rollback only undoes moves made with `python -m scripts.mlops promote`; to point the alias "
            f"somewhere, promote a version: `python -m scripts.mlops promote --model {model} --version N --alias {alias}`.",
        )
    current = _current(model, alias)
    latest = entries[-1]
    if current != latest.to_version:
        shown = "unset" if current is None else f"version {current}"
        raise RegistryError(
            f"{model}@{alias} is {shown}, but its promotion history ends at version {latest.to_version}: "
            "the alias was changed outside the promotion commands, so a rollback could undo the wrong move",
            f"record the current state by promoting explicitly: "
            f"`python -m scripts.mlops promote --model {model} --version N --alias {alias}`.",
        )
    stack: list[PromotionEntry] = []
    for entry in entries:
        if entry.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(entry)
    if not stack or stack[-1].from_version is None:
        first = stack[-1] if stack else entries[0]
        raise RegistryError(
            f"{model}@{alias} has nothing earlier to roll back to: entry #{first.seq} set it for the first time "
            f"(to version {first.to_version}) and every later move has been rolled back",
            f"promote the version you want explicitly: "
            f"`python -m scripts.mlops promote --model {model} --version N --alias {alias}`.",
        )
    return stack[-1]


def rollback(
    model: str,
    alias: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    clock: Clock | None = None,
) -> PromotionResult:
    """Undo the latest not-yet-undone promotion of ``model@alias`` (see the module docstring)."""
    _check_alias(alias)
    undone = rollback_target(model, alias)
    target = int(undone.from_version)  # type: ignore[arg-type]  # rollback_target guarantees it
    registry.get_version(model, target)  # the version may have been deleted since
    why = reason or f"rollback of entry #{undone.seq}"
    return _move(model, alias, target, _current(model, alias), "rollback", actor, why, clock)


def format_history(entries: Sequence[PromotionEntry]) -> str:
    """A plain-text table of history entries (for the CLI and notebooks)."""
    if not entries:
        return "(no promotions recorded)"
    header = ("#", "at (UTC)", "alias", "action", "from", "to", "actor", "reason")
    rows = [
        (
            str(e.seq),
            e.at,
            e.alias,
            e.action,
            "-" if e.from_version is None else str(e.from_version),
            str(e.to_version),
            e.actor,
            e.reason or "",
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> None:
    from .workspace import open_workspace

    open_workspace(args.workspace, fresh=False)


def cmd_promote(args: argparse.Namespace) -> int:
    _open(args)
    print(promote(args.model, args.version, args.alias, actor=args.actor, reason=args.reason).message)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _open(args)
    print(rollback(args.model, args.alias, actor=args.actor, reason=args.reason).message)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    _open(args)
    print(format_history(history(args.model, args.alias)))
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``promote``, ``rollback`` and ``history`` to the CLI."""
    p = subparsers.add_parser("promote", help="point an alias (staging, production, ...) at a model version")
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True, type=int)
    p.add_argument("--alias", required=True)
    p.add_argument("--reason", help="why (stored in the promotion history)")
    p.add_argument("--actor", help="who (default: your login name)")
    p.set_defaults(func=cmd_promote)

    p = subparsers.add_parser("rollback", help="move an alias back to where it was before its latest promotion")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", required=True)
    p.add_argument("--reason", help="why (stored in the promotion history)")
    p.add_argument("--actor", help="who (default: your login name)")
    p.set_defaults(func=cmd_rollback)

    p = subparsers.add_parser("history", help="the promotion history of a model, oldest first")
    p.add_argument("--model", required=True)
    p.add_argument("--alias", help="only this alias")
    p.set_defaults(func=cmd_history)
