"""Move registry aliases between versions, with an append-only promotion history.

MLflow records where an alias points *now*, not where it pointed before, so this module keeps
the history itself, **in the registry**: one registered-model tag per change, so it works the
same with the embedded SQLite store and with a tracking server::

    promotion.000001 = {"seq": 1, "alias": "production", "from_version": null, "to_version": 1,
                        "actor": "ana", "at": "2026-01-05T10:00:00+00:00",
                        "action": "promote", "reason": "first release"}

**One transaction per move.** Whatever the backend (a SQLite file, a tracking server),
a promotion or rollback holds the model's *promotion lock* while it reads the alias and the
history, writes the new entry and then moves the alias. The lock is a registered model
named ``<model>.promotion-lock``: creating a registered model is atomic in every MLflow
store (a second create fails with ``RESOURCE_ALREADY_EXISTS``), so exactly one process holds
it; it is deleted when the move is done. Concurrent commands wait for it (up to
:data:`LOCK_WAIT` seconds) and then fail with a clear error, changing nothing; a lock left by
a killed process expires after :data:`LOCK_LEASE` seconds. So N concurrent promotions give
a history with no lost or duplicated entry, an unbroken from -> to chain, and an alias equal
to its last entry. The entry is written *before* the alias moves: if the alias move fails,
the entry is deleted again; if the process dies in between, the next command finds an entry
whose move never happened (the alias is still at its ``from_version``) and removes it.

Every user-supplied field is bounded (:data:`MAX_ACTOR`, :data:`MAX_REASON`, alias and model
names) and checked before anything is written.

Rules:

* :func:`promote` is idempotent: promoting the version an alias already points at changes
  nothing and records nothing.
* :func:`rollback` *undoes* the alias's latest promotion that has not been undone yet, like an
  undo stack: after promotions v1 -> v2 -> v3, rollbacks go to v2, then to v1, then refuse
  (nothing was before v1). A rollback is recorded as a new ``"rollback"`` entry. A new
  promotion after a rollback starts a new branch, exactly as an editor's undo does.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from . import registry
from .errors import MlopsError, RegistryError

TAG_PREFIX = "promotion."
_TAG_PATTERN = re.compile(r"^promotion\.(\d+)$")
MAX_REASON = 1000
MAX_ACTOR = 200
#: Suffix of the registered model that serves as a model's promotion lock.
LOCK_SUFFIX = registry.INTERNAL_SUFFIX
#: Seconds a command waits for another promotion of the same model to finish.
LOCK_WAIT = 30.0
#: Seconds after which a lock is considered abandoned (its holder died) and may be taken over.
LOCK_LEASE = 60.0
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
    return datetime.now(UTC)


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
    entries = _entries(dict(registry.get_model(model).tags or {}))
    return [entry for entry in entries if alias is None or entry.alias == alias]


# --- the promotion lock -------------------------------------------------------------------


def lock_name(model: str) -> str:
    """The registered model whose existence means "a promotion of ``model`` is in progress"."""
    return f"{model}{LOCK_SUFFIX}"


def _lock_age(client: Any, name: str) -> float | None:
    """Seconds since the lock ``name`` was taken, or None if it vanished meanwhile.

    The age comes from the registered model's own ``creation_timestamp``, written in the same
    row as the lock itself (a tag might not be visible yet to a concurrent reader).
    """
    try:
        lock = client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - released between our create attempt and this read
        return None
    created = getattr(lock, "creation_timestamp", None)
    return time.time() - created / 1000.0 if created else 0.0


@contextlib.contextmanager
def promotion_lock(model: str, *, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold ``model``'s promotion lock for the duration of the block (see the module docstring)."""
    client = registry.client()
    name = lock_name(model)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        try:
            client.create_registered_model(
                name,
                tags={"holder": holder, "taken_at": f"{time.time():.3f}"},
                description=f"Held while a promotion of {model!r} is recorded.",
            )
            break
        except Exception as exc:  # noqa: BLE001
            code = str(getattr(exc, "error_code", ""))
            # ALREADY_EXISTS: someone holds it. DOES_NOT_EXIST: the store saw the clash, then the
            # holder released the lock before the store's own read-back. Both mean "try again".
            contended = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")
            if not any(word in code for word in contended) and "database is locked" not in str(exc):
                raise registry.translate(exc, f"lock the promotion history of {model!r}") from None
        age = _lock_age(client, name)
        if age is not None and age > LOCK_LEASE:  # abandoned by a process that died
            with contextlib.suppress(Exception):
                client.delete_registered_model(name)
            continue
        if time.monotonic() > deadline:
            raise RegistryError(
                f"another promotion of {model!r} is in progress (its lock {name!r} is held); nothing was changed",
                f"retry in a moment. If no promotion is running, the lock expires {LOCK_LEASE:.0f} s after it was "
                "taken.",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.delete_registered_model(name)


# --- moves --------------------------------------------------------------------------------


def _check_fields(alias: str, actor: str | None, reason: str | None) -> None:
    registry.check_alias(alias)
    if actor is not None and (not actor.strip() or len(actor) > MAX_ACTOR):
        raise MlopsError(
            f"the actor must be 1 to {MAX_ACTOR} characters, got {len(actor)}",
            "pass a login name or a short name with --actor.",
        )
    if reason is not None and len(reason) > MAX_REASON:
        raise MlopsError(f"the reason is {len(reason)} characters long", f"keep it under {MAX_REASON} characters.")


def _settle(model: str, alias: str) -> tuple[list[PromotionEntry], int | None]:
    """The alias's history and current version, after removing an interrupted move.

    Called with the lock held. An entry whose move never happened (the process died between
    writing it and moving the alias, so the alias is still at its ``from_version``) is deleted.
    """
    client = registry.client()
    entries = history(model)
    current = registry.current_version(model, alias)
    mine = [entry for entry in entries if entry.alias == alias]
    if mine and mine[-1].to_version != current and mine[-1].from_version == current:
        with registry.translated(f"repair the promotion history of {model!r}"):
            client.delete_registered_model_tag(model, mine[-1].tag)
        entries.remove(mine[-1])
    return entries, current


def _move(
    model: str,
    alias: str,
    version: int,
    previous: int | None,
    entries: list[PromotionEntry],
    action: Action,
    actor: str | None,
    reason: str | None,
    clock: Clock | None,
) -> PromotionResult:
    """Write the entry, then move the alias (the lock is held); undo the entry if the move fails."""
    at = (clock or _utc_now)().astimezone(UTC).isoformat(timespec="seconds")
    entry = PromotionEntry(
        seq=max((e.seq for e in entries), default=0) + 1,
        alias=alias,
        from_version=previous,
        to_version=version,
        actor=actor or getpass.getuser(),
        at=at,
        action=action,
        reason=reason,
    )
    client = registry.client()
    with registry.translated(f"record the move of {model}@{alias}"):
        client.set_registered_model_tag(model, entry.tag, entry.to_json())
    try:
        client.set_registered_model_alias(model, alias, str(version))
    except Exception as exc:  # noqa: BLE001
        with contextlib.suppress(Exception):
            client.delete_registered_model_tag(model, entry.tag)
        error = registry.translate(exc, f"move {model}@{alias}")
        raise RegistryError(f"{error.problem}; the alias and the history are unchanged", error.fix) from None
    return PromotionResult(model, alias, version, previous, entry)


def promote(
    model: str,
    version: int,
    alias: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    clock: Clock | None = None,
) -> PromotionResult:
    """Point ``model@alias`` at ``version`` and record the move, as one transaction.

    Idempotent: if the alias already points at ``version``, nothing is changed or recorded
    (the result's ``changed`` is False). ``actor`` defaults to the login name; ``clock``
    (returning an aware datetime) is for tests.
    """
    _check_fields(alias, actor, reason)
    registry.get_version(model, int(version))  # lists the existing versions if it does not exist
    with promotion_lock(model):
        entries, previous = _settle(model, alias)
        if previous == int(version):
            return PromotionResult(model, alias, int(version), previous, None)
        return _move(model, alias, int(version), previous, entries, "promote", actor, reason, clock)


def _rollback_target(model: str, alias: str, entries: list[PromotionEntry], current: int | None) -> PromotionEntry:
    mine = [entry for entry in entries if entry.alias == alias]
    if not mine:
        raise RegistryError(
            f"{model}@{alias} has no promotion history, so there is nothing to roll back to",
            f"rollback only undoes moves made with `python -m scripts.mlops promote`; to point the alias "
            f"somewhere, promote a version: `python -m scripts.mlops promote --model {model} --version N --alias {alias}`.",
        )
    latest = mine[-1]
    if current != latest.to_version:
        shown = "unset" if current is None else f"version {current}"
        raise RegistryError(
            f"{model}@{alias} is {shown}, but its promotion history ends at version {latest.to_version}: "
            "the alias was changed outside the promotion commands, so a rollback could undo the wrong move",
            f"record the current state by promoting explicitly: "
            f"`python -m scripts.mlops promote --model {model} --version N --alias {alias}`.",
        )
    stack: list[PromotionEntry] = []
    for entry in mine:
        if entry.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(entry)
    if not stack or stack[-1].from_version is None:
        first = stack[-1] if stack else mine[0]
        raise RegistryError(
            f"{model}@{alias} has nothing earlier to roll back to: entry #{first.seq} set it for the first time "
            f"(to version {first.to_version}) and every later move has been rolled back",
            f"promote the version you want explicitly: "
            f"`python -m scripts.mlops promote --model {model} --version N --alias {alias}`.",
        )
    return stack[-1]


def rollback_target(model: str, alias: str) -> PromotionEntry:
    """The entry a rollback of ``alias`` would undo (the latest one not undone yet)."""
    registry.check_alias(alias)
    return _rollback_target(model, alias, history(model), registry.current_version(model, alias))


def rollback(
    model: str,
    alias: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    clock: Clock | None = None,
) -> PromotionResult:
    """Undo the latest not-yet-undone promotion of ``model@alias`` (see the module docstring)."""
    _check_fields(alias, actor, reason)
    registry.get_model(model)
    with promotion_lock(model):
        entries, current = _settle(model, alias)
        undone = _rollback_target(model, alias, entries, current)
        target = int(undone.from_version)  # type: ignore[arg-type]  # _rollback_target guarantees it
        registry.get_version(model, target)  # the version may have been deleted since
        why = reason or f"rollback of entry #{undone.seq}"
        return _move(model, alias, target, current, entries, "rollback", actor, why, clock)


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
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    return "\n".join(lines)
