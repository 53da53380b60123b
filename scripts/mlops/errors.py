"""One exception type for every problem a learner can fix, with the fix in the message."""

from __future__ import annotations


class MlopsError(Exception):
    """A problem with the learner's input or environment, not a bug in the toolkit.

    ``problem`` says what is wrong; ``fix`` says what to do about it. The command-line
    interface prints both and exits with status 1 instead of showing a traceback.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\nFix: {fix}")

    def _render_traceback_(self) -> list[str]:  # IPython: show the message, not a stack
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


class DataError(MlopsError):
    """A data file is missing, empty or does not match the churn schema."""


class RegistryError(MlopsError):
    """A registered model, version or alias does not exist (or cannot be reached)."""


#: The toolkit's exit codes: 0 done (or passed), 2 refused (a gate, a comparison or an audit
#: said no), 1 unusable input (nothing was judged). argparse's own usage errors map to 1 too.
EXIT_OK, EXIT_UNUSABLE, EXIT_REFUSED = 0, 1, 2
