"""How `make test` splits the tests among its workers (tests/work_units.py): every file it names
exists, the groups are what they claim, and xdist really hands the heaviest unit out first."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests import work_units

REPO = Path(__file__).resolve().parents[1]


def test_every_unit_and_file_named_exists() -> None:
    # A renamed test file would silently leave its group or lose its weight.
    for name in [*work_units.WARM_FILES, *work_units.UNIT_SECONDS]:
        if name == work_units.WARM_UNIT:
            continue
        assert (REPO / name).exists(), f"tests/work_units.py names {name}, which does not exist"


def test_units_group_the_notebooks_the_grading_tests_and_the_warm_files() -> None:
    assert work_units.unit_of("solutions/00-first-model.ipynb::Cell 3") == "solutions"
    assert work_units.unit_of("tests/grading/test_grade.py::test_x[a.ipynb]") == "tests/grading"
    assert work_units.unit_of("tests/grading/test_hostile.py::test_y") == "tests/grading"
    for path in work_units.WARM_FILES:
        assert work_units.unit_of(f"{path}::test_z[p::q]") == work_units.WARM_UNIT
    assert work_units.unit_of("tests/mlops/test_gate.py::test_w") == "tests/mlops/test_gate.py"


class _Node:
    """The part of xdist's WorkerController a scheduler uses."""

    def __init__(self, name: str) -> None:
        self.gateway, self.shutting_down, self.sent = SimpleNamespace(id=name), False, []

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent.append(indexes)

    def shutdown(self) -> None:
        self.shutting_down = True


def _first_units(scheduler: Any, collection: list[str], nodes: list[_Node]) -> list[str]:
    for node in nodes:
        scheduler.add_node(node)
    for node in nodes:
        scheduler.add_node_collection(node, collection)
    scheduler.schedule()
    return [work_units.unit_of(collection[node.sent[0][0]]) for node in nodes]


def test_xdist_hands_out_the_heaviest_units_first_not_the_ones_with_most_tests() -> None:
    collection = [f"tests/test_labs.py::test_{i}" for i in range(30)]  # many quick tests
    collection += ["tests/mlops/test_concurrency.py::test_a", "tests/mlops/test_concurrency.py::test_b"]
    collection += [f"tests/grading/test_grade.py::test_{i}" for i in range(5)]
    collection += [f"tests/mlops/test_gate.py::test_{i}" for i in range(8)]
    config = SimpleNamespace(
        getvalue=lambda name: {"tx": ["2*popen"], "dist": "loadfile"}[name],
        option=SimpleNamespace(loadscopereorder=True),
    )
    nodes = [_Node("gw0"), _Node("gw1")]
    first = _first_units(work_units.scheduler(config, None), collection, nodes)
    assert first == [work_units.WARM_UNIT, "tests/grading"]

    # What xdist's own loadfile order would have done: the file with the most tests first.
    from xdist.scheduler import LoadFileScheduling

    class Stock(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_units.unit_of(nodeid)

    stock = _first_units(Stock(config, None), collection, [_Node("gw0"), _Node("gw1")])
    assert stock[0] == "tests/test_labs.py"


def test_an_unlisted_unit_weighs_by_its_number_of_tests() -> None:
    queue = {"tests/a.py": dict.fromkeys("xyz", False), "tests/b.py": dict.fromkeys("uvwxyz", False)}
    assert work_units.heaviest(queue) == "tests/b.py"
    assert work_units.heaviest({**queue, "tests/test_site.py": {"t": False}}) == "tests/test_site.py"
