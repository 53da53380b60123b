"""Check cells that teach: every check prints what was expected, what was found and a hint.

Used in a lab's check cells::

    from scripts.grading.checks import exercise

    with exercise("00.1") as check:
        slice_name = check.value("hardest_slice")
        check.equal(slice_name, expected, "the hardest slice", points=2,
                    hint="sort the per-slice table by accuracy")

All checks of a cell run; each prints one ✓/✗ line and publishes an invisible
``application/vnd.mlops-labs.check+json`` output. When the ``with`` block ends, the cell fails
(a short error, no stack) if any check failed, so the student sees a red cell.

This is **instant feedback only**: it runs in the student's kernel, where it can be changed, so
the grader never reads it. Points come from the judgments a check cell declares
(``metadata.lab.judge``), judged in the grader's own process (:mod:`scripts.grading.judge`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

MIME = "application/vnd.mlops-labs.check+json"


class NotDefinedYet(NameError):
    """Raised when a check touches a variable the student has not defined yet."""


class _Missing:
    """Stands for a variable the student has not defined yet; any use of it raises NotDefinedYet."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __getattr__(self, attribute: str) -> Any:
        raise NotDefinedYet(f"`{object.__getattribute__(self, 'name')}` is not defined yet", name=self.name)

    def __getitem__(self, key: Any) -> Any:
        raise NotDefinedYet(f"`{self.name}` is not defined yet", name=self.name)

    def __iter__(self) -> Any:
        raise NotDefinedYet(f"`{self.name}` is not defined yet", name=self.name)

    def __len__(self) -> int:
        raise NotDefinedYet(f"`{self.name}` is not defined yet", name=self.name)

    def __repr__(self) -> str:
        return f"<{self.name} is not defined>"


@dataclass(frozen=True)
class CheckRecord:
    """One check's outcome as the student sees it (feedback only: the grader judges on its own)."""

    id: str
    exercise: str
    passed: bool
    points: float
    earned: float
    message: str


class CheckFailed(AssertionError):
    """Raised at the end of a check cell whose checks did not all pass."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a stack
        return [f"\x1b[31mCheckFailed\x1b[0m: {self}"]


class Exercise:
    """Collects the checks of one check cell. Use through :func:`exercise`."""

    def __init__(self, exercise_id: str, namespace: dict[str, Any] | None = None) -> None:
        self.exercise_id = exercise_id
        self.namespace = namespace
        self.results: list[CheckRecord] = []

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> "Exercise":
        if self.namespace is None:
            self.namespace = sys._getframe(1).f_globals
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and not isinstance(exc, CheckFailed):
            if not isinstance(exc, Exception):
                return  # KeyboardInterrupt and friends propagate untouched
            self._record(
                False,
                0,
                f"the checks stopped early: {type(exc).__name__}: {exc}. "
                f"Run the cells above in order and make Exercise {self.exercise_id} run without errors.",
            )
        earned = sum(result.earned for result in self.results)
        possible = sum(result.points for result in self.results)
        failed = [result for result in self.results if not result.passed]
        print(f"Exercise {self.exercise_id}: {_fmt(earned)}/{_fmt(possible)} points from these checks")
        if failed:
            raise CheckFailed(
                f"Exercise {self.exercise_id}: {len(failed)} of {len(self.results)} check(s) failed; "
                "read the ✗ lines above, fix your code, re-run it and then this cell."
            ) from None

    # -- looking up the student's work ---------------------------------------------------------
    def value(self, name: str) -> Any:
        """The student's variable ``name``, or a marker that makes every check on it fail clearly.

        A variable still bound to ``...`` (the placeholder a generated stub shows) counts as not
        defined yet.
        """
        namespace = self.namespace if self.namespace is not None else sys._getframe(1).f_globals
        if name in namespace and namespace[name] is not Ellipsis:  # `x = ...` is a stub's placeholder
            return namespace[name]
        return _Missing(name)

    # -- checks -------------------------------------------------------------------------------
    def that(
        self,
        passed: bool | Callable[[], bool],
        message: str,
        *,
        points: float = 1,
        expected: str = "",
        found: str | Callable[[], object] = "",
        hint: str = "",
    ) -> bool:
        """A general check. ``passed`` may be a callable; if it raises, the check fails with the error.

        ``found`` may be a callable too: it is only called when the check fails, and if it raises,
        the line says the value could not be read instead of crashing the cell.
        """
        if callable(passed):
            try:
                outcome = bool(passed())
            except Exception as exc:  # the student's objects may be anything: report, don't crash
                missing = _missing_name(exc)
                detail = f"{missing} is not defined yet" if missing else f"{type(exc).__name__}: {exc}"
                return self._record(False, points, f"{message}: could not be checked ({detail})", hint)
        else:
            outcome = bool(passed)
        if outcome:
            return self._record(True, points, message)
        if callable(found):
            try:
                found = str(found())
            except Exception as exc:  # the student's objects may be anything: report, don't crash
                missing = _missing_name(exc)
                found = f"{missing} is not defined yet" if missing else f"unreadable ({type(exc).__name__}: {exc})"
        detail = "; ".join(part for part in (expected and f"expected {expected}", found and f"found {found}") if part)
        return self._record(False, points, f"{message} — {detail}" if detail else message, hint)

    def equal(self, found: Any, expected: Any, what: str, *, points: float = 1, hint: str = "", why: str = "") -> bool:
        """``found == expected``. ``why`` explains where the expected value comes from."""
        if isinstance(found, _Missing):
            return self._missing(found, what, points, hint)
        try:
            ok = bool(found == expected)
        except Exception:  # e.g. comparing a DataFrame: ambiguous truth value
            ok = False
        if ok:
            return self._record(True, points, f"{what} is {found!r}")
        because = f" ({why})" if why else ""
        return self._record(False, points, f"{what}: expected {expected!r}{because}, found {found!r}", hint)

    def close(
        self,
        found: Any,
        expected: float,
        what: str,
        *,
        tol: float = 1e-6,
        points: float = 1,
        hint: str = "",
        why: str = "",
    ) -> bool:
        """``found`` is a number within ``tol`` of ``expected``."""
        if isinstance(found, _Missing):
            return self._missing(found, what, points, hint)
        try:
            number = float(found)
        except (TypeError, ValueError):
            return self._record(False, points, f"{what}: expected a number, found {found!r}", hint)
        if not math.isnan(number) and abs(number - expected) <= tol:
            return self._record(True, points, f"{what} is {number:.4g}")
        because = f" ({why})" if why else ""
        return self._record(
            False, points, f"{what}: expected {expected:.4g} ± {tol:g}{because}, found {number:.4g}", hint
        )

    def is_instance(
        self, found: Any, kind: type | tuple[type, ...], what: str, *, points: float = 1, hint: str = ""
    ) -> bool:
        """``found`` is an instance of ``kind``."""
        if isinstance(found, _Missing):
            return self._missing(found, what, points, hint)
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        if isinstance(found, kind):
            return self._record(True, points, f"{what} is a {names}")
        return self._record(False, points, f"{what}: expected a {names}, found a {type(found).__name__}", hint)

    # -- internals -------------------------------------------------------------------------
    def _missing(self, found: _Missing, what: str, points: float, hint: str) -> bool:
        return self._record(
            False,
            points,
            f"{what}: `{found.name}` is not defined yet — complete Exercise {self.exercise_id} and run its cell",
            hint,
        )

    def _record(self, passed: bool, points: float, message: str, hint: str = "") -> bool:
        check_id = f"{self.exercise_id}-{_letters(len(self.results))}"
        earned = points if passed else 0
        result = CheckRecord(check_id, self.exercise_id, passed, points, earned, message)
        self.results.append(result)
        mark = "✓" if passed else "✗"
        line = f"{mark} [{check_id}] {message}"
        if not passed and hint:
            line += f"\n      hint: {hint}"
        line += f"  ({_fmt(earned)}/{_fmt(points)})"
        print(line)
        _publish(result)
        return passed


def exercise(exercise_id: str, namespace: dict[str, Any] | None = None) -> Exercise:
    """Start the checks of one exercise; use as ``with exercise("00.1") as check: ...``."""
    return Exercise(exercise_id, namespace)


def _publish(result: CheckRecord) -> None:
    """Emit the machine-readable record (invisible in Jupyter, read by the grader)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: nothing to publish to
        return
    if get_ipython() is None:
        return
    sys.stdout.flush()
    display({MIME: asdict(result)}, raw=True)


def _missing_name(exc: Exception) -> str | None:
    if isinstance(exc, NameError):
        return f"`{exc.name}`" if getattr(exc, "name", None) else str(exc)
    return None


def _letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def _fmt(number: float) -> str:
    return f"{number:g}"
