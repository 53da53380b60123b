"""How `make test` splits the tests among its pytest-xdist workers (used by conftest.py's
``pytest_xdist_make_scheduler``; kept out of conftest.py so that a test can check it).

A *unit* is what one worker runs from start to end: a test file, as with ``--dist loadfile``,
except for three groups that each need a warm process of their own in the worker that runs them,
made once per worker: the reference notebooks (the kernels' zygote, 4 CPU-s), the grading tests
(the grader's zygote and migrated database, 7.6 CPU-s) and the files of :data:`WARM_FILES` (the
fork server of :mod:`scripts.mlops.warm`, 4.5 CPU-s). Spread over the workers, each worker
paid for them.

Units are handed out heaviest first (:data:`UNIT_SECONDS`). xdist's own order is by number of
tests, which handed out a two-test file of 17 s last, while the other workers had finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The unit of the test files whose tests fork from this process's warm interpreter.
WARM_UNIT = "tests/mlops (warm interpreter)"

#: The deploy gate's steps, the drills' commands, the concurrent promotions and the model servers
#: fork from the warm interpreter (the first of them in a worker starts it), and the tracking
#: servers do when it is already running.
WARM_FILES = frozenset(
    f"tests/mlops/{name}.py"
    for name in ("test_ci_local", "test_incidents", "test_concurrency", "test_serve", "test_contention")
)

#: Wall seconds of the larger units in a `make test` run on the 2-core course machine (the sum of
#: their tests' setup, call and teardown times; 2026-11-27, rounded). They decide only the order
#: in which units are handed out: a stale figure costs balance, never a result.
UNIT_SECONDS: Mapping[str, float] = {
    WARM_UNIT: 226.0,
    "tests/grading": 149.0,
    "tests/test_forkkernel.py": 68.0,
    "tests/test_site.py": 67.0,
    "solutions": 45.0,
    "tests/mlops/test_audit.py": 35.0,
    "tests/mlops/test_inject.py": 27.0,
    "tests/mlops/test_warm.py": 26.0,
    "tests/mlops/test_faults.py": 16.0,
    "tests/mlops/test_release.py": 11.0,
    "tests/mlops/test_doctor.py": 10.0,
    "tests/mlops/test_train_evaluate.py": 10.0,
}

#: What a unit not in :data:`UNIT_SECONDS` is reckoned to take per test.
SECONDS_PER_TEST = 0.3


def unit_of(nodeid: str) -> str:
    """The unit a test belongs to, from its node id."""
    if nodeid.startswith("solutions/"):
        return "solutions"
    if nodeid.startswith("tests/grading/"):
        return "tests/grading"
    path = nodeid.split("::", 1)[0]
    return WARM_UNIT if path in WARM_FILES else path


def heaviest(units: Mapping[str, Mapping[str, bool]]) -> str:
    """The unit to hand out next: the longest one by :data:`UNIT_SECONDS` (the first on a tie).

    ``units`` maps each waiting unit to its tests, as xdist's work queue does.
    """
    return max(units, key=lambda unit: UNIT_SECONDS.get(unit, SECONDS_PER_TEST * len(units[unit])))


def scheduler(config: Any, log: Any) -> Any:
    """xdist's ``--dist loadfile`` scheduler with these units, handed out heaviest first."""
    from xdist.scheduler import LoadFileScheduling

    class WorkUnits(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            # xdist hands out the first unit of its queue: put the heaviest one there.
            self.workqueue.move_to_end(heaviest(self.workqueue), last=False)
            super()._assign_work_unit(node)

    return WorkUnits(config, log)
