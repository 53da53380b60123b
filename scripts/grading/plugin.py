"""pytest plugin that turns nbval's cell-by-cell run into tamper-proof grading.

Loaded by ``python -m scripts.grading grade`` with ``-p scripts.grading.plugin`` (never as a
conftest, so nothing shipped beside a submission can change it). On top of
``pytest --nbval-lax --nbval-current-env`` it:

* replaces every locked cell (setup, check, checkpoint) with the canonical source from the
  lab's manifest, flags the submission ``tampered`` when a locked cell was edited or deleted,
  and re-inserts deleted ones where they belong;
* rebuilds every cell's nbval options, so ``# NBVAL_SKIP``, ``raises-exception`` and other
  markers or tags a student added change nothing;
* reads the kernel's ``execute_reply`` status, so a cell whose traceback was suppressed still
  fails;
* after a cell timeout, continues grading: the interrupted kernel keeps its state, and a kernel
  that died is restarted and the cells that had run are replayed;
* inserts held-out checks (from the manifest or an instructor's ``--grading-private`` folder)
  after their anchor cells;
* scores each check cell from the machine-readable check records it published, and writes
  every item's outcome to ``--grading-results`` (JSON) for the ``grade`` command.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat
import pytest

from .checks import MIME

try:  # nbval is a hard dependency of grading; import errors should be loud
    from nbval import kernel as nbval_kernel
    from nbval.plugin import IPyNbCell
except ImportError as exc:  # pragma: no cover
    raise ImportError("the grading plugin needs nbval (pip install nbval)") from exc

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SUSPICIOUS = re.compile(r"showtraceback|scripts\.grading|sys\.modules|__builtins__|builtins\.|_record\b|get_ipython\(\)\.(events|set_custom_exc)")
PROPERTY = "grading"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading", "lab grading")
    group.addoption("--grading-manifest", help="grading manifest of the lab (JSON)")
    group.addoption("--grading-results", help="where to write the per-item results (JSON)")
    group.addoption("--grading-private", default=None, help="folder with instructors' held-out checks")
    group.addoption("--grading-total", type=int, default=0, help="number of notebooks, for the progress bar")


# -- the execute_reply status that nbval ignores ----------------------------------------------

_original_await_reply = nbval_kernel.RunningKernel.await_reply


class KernelDied(RuntimeError):
    """The kernel process ended while a cell was running (a crash, os._exit, out of memory)."""


def _await_reply(self: Any, msg_id: str, timeout: float | None = None) -> Any:
    """nbval's await_reply, remembering the reply content (status 'ok' / 'error') and noticing
    a dead kernel within a second instead of waiting for the whole cell timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        try:
            msg = self.get_message(stream="shell", timeout=wait)
        except Empty:
            if not self.is_alive():
                raise KernelDied("Kernel died while running the cell") from None
            if deadline is not None and time.monotonic() >= deadline:
                raise  # nbval treats this as the cell timeout
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            self.last_reply = msg["content"]
            if msg["content"]["status"] == "aborted":
                raise RuntimeError("Kernel aborted execution request")
            return msg


nbval_kernel.RunningKernel.await_reply = _await_reply


# -- manifest and held-out checks ---------------------------------------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_manifest(path: str) -> dict[str, Any]:
    manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    hidden = list(manifest.get("hidden", []))
    manifest["hidden"] = hidden
    return manifest


def load_private(folder: str | None, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Held-out checks from ``--grading-private`` (see :func:`scripts.grading.grade.private_checks`)."""
    if not folder:
        return []
    from .grade import GradingError, private_checks

    try:
        return private_checks(folder, manifest)
    except GradingError as exc:
        raise pytest.UsageError(str(exc)) from None


def _options() -> defaultdict[str, bool]:
    """nbval options for every graded cell: run it, compare nothing, skip nothing."""
    return defaultdict(bool, check=False)


def _cell(source: str, cell_id: str, tags: list[str], lab: dict[str, Any]) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source, id=cell_id)
    cell.metadata["tags"] = list(tags)
    cell.metadata["lab"] = dict(lab)
    return cell


def _props(**values: Any) -> tuple[str, dict[str, Any]]:
    return (PROPERTY, values)


def _submission(nbfile: Any) -> str:
    return Path(str(nbfile.fspath)).parent.name


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("grading_manifest"):
        return
    manifest = load_manifest(config.getoption("grading_manifest"))
    held_out = manifest["hidden"] + load_private(config.getoption("grading_private"), manifest)
    canonical = {cell["id"]: cell for cell in manifest["cells"]}
    locked = {cid: cell for cid, cell in canonical.items() if "sha256" in cell and cell["type"] == "code"}
    order = [cell["id"] for cell in manifest["cells"]]

    groups: dict[Any, list[pytest.Item]] = {}
    others: list[pytest.Item] = []
    for item in items:
        if isinstance(item, IPyNbCell):
            groups.setdefault(item.parent, []).append(item)
        else:
            others.append(item)

    result: list[pytest.Item] = []
    for nbfile, cells in groups.items():
        submission = _submission(nbfile)
        flags: set[str] = set()
        by_id: dict[str, IPyNbCell] = {}
        sequence: list[IPyNbCell] = []
        for item in cells:
            cell_id = item.cell.get("id")
            spec = canonical.get(cell_id)
            if spec is not None and cell_id in locked and cell_id not in by_id:
                if _sha(item.cell.source) != spec["sha256"]:
                    flags.add("tampered")
                elif sorted(item.cell.metadata.get("tags", [])) != sorted(spec["tags"]):
                    flags.add("ignored_markers")
                item.cell = _cell(spec["source"], cell_id, spec["tags"], spec["lab"])
                role = spec["role"]
            else:
                if spec is None or cell_id in by_id:
                    cell_id = f"student-{item.cell_num}"
                role = "exercise" if spec is not None and spec["role"] == "lab-exercise" else "student"
                if re.search(r"NBVAL_|nbval-|raises-exception", item.cell.source + json.dumps(item.cell.metadata.get("tags", []))):
                    flags.add("ignored_markers")
                if SUSPICIOUS.search(item.cell.source):
                    flags.add("suspicious")
            item.cell.outputs = []
            item.cell.execution_count = None
            item.options = _options()
            spec = canonical.get(cell_id, {})
            lab = spec.get("lab", {}) if isinstance(spec, dict) else {}
            item.user_properties.append(
                _props(
                    submission=submission,
                    cell_id=cell_id,
                    role=role,
                    exercise=spec.get("exercise") or lab.get("exercise"),
                    points=lab.get("points", 0) if role == "lab-check" else 0,
                )
            )
            by_id.setdefault(cell_id, item)
            sequence.append(item)

        # Re-insert deleted locked cells after their nearest surviving predecessor.
        restored: list[str] = []
        for cid in order:
            if cid in locked and cid not in by_id:
                spec = locked[cid]
                new = IPyNbCell.from_parent(
                    nbfile, name=f"restored {cid}", cell_num=-1, cell=_cell(spec["source"], cid, spec["tags"], spec["lab"]), options=_options()
                )
                new.user_properties.append(
                    _props(submission=submission, cell_id=cid, role=spec["role"], exercise=spec.get("exercise"),
                           points=spec["lab"].get("points", 0) if spec["role"] == "lab-check" else 0)
                )
                sequence.insert(_insert_at(sequence, spec, canonical), new)
                by_id[cid] = new
                restored.append(cid)
        if restored:
            flags.add("tampered")
            flags.add("restored:" + "+".join(restored))

        # Held-out checks go right after their anchor cell (or at the end if it is gone).
        for check in held_out:
            new = IPyNbCell.from_parent(
                nbfile, name=f"held-out {check['id']}", cell_num=-1,
                cell=_cell(check["source"], re.sub(r"[^A-Za-z0-9_-]", "-", check["id"]), ["lab-hidden"],
                           {"exercise": check["exercise"], "points": check["points"]}),
                options=_options(),
            )
            new.user_properties.append(
                _props(submission=submission, cell_id=check["id"], role="lab-hidden", exercise=check["exercise"],
                       points=check["points"], hint=check.get("hint", ""))
            )
            anchor = by_id.get(check["after"])
            position = sequence.index(anchor) + 1 if anchor in sequence else len(sequence)
            sequence.insert(position, new)

        if sequence:
            sequence[0].user_properties.append(("grading-flags", sorted(flags)))
            sequence[-1].user_properties.append(("grading-last", True))
        result.extend(sequence)
    items[:] = result + others


def _insert_at(sequence: list[Any], spec: dict[str, Any], canonical: dict[str, Any]) -> int:
    """Index after the nearest predecessor (by manifest order) that is present."""
    previous = spec.get("after")
    present = {item.cell.get("id"): index for index, item in enumerate(sequence)}
    while previous is not None:
        if previous in present:
            return present[previous] + 1
        previous = canonical.get(previous, {}).get("after")
    return 0


# -- running: timeouts and dead kernels ----------------------------------------------------------

_ran: dict[Any, list[str]] = defaultdict(list)  # notebook -> sources of cells that ran without error


def _restart_kernel(nbfile: Any, item: Any) -> None:
    """Start a new kernel for ``nbfile`` and replay the cells that had run successfully."""
    if nbfile.kernel is not None and nbfile.kernel.is_alive():
        nbfile.kernel.stop()
    nbfile.kernel = nbval_kernel.RunningKernel(
        nbval_kernel.CURRENT_ENV_KERNEL_NAME,
        cwd=str(nbfile.fspath.dirname),
        startup_timeout=item.config.option.nbval_kernel_startup_timeout,
    )
    timeout = item.config.option.nbval_cell_timeout
    for source in _ran[nbfile]:
        msg_id = nbfile.kernel.execute_cell_input(source, allow_stdin=False)
        try:
            nbfile.kernel.await_reply(msg_id, timeout=timeout)
            nbfile.kernel.await_idle(msg_id, timeout=30)
        except Exception:  # best effort: later cells fail on their own if state is missing
            break


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not isinstance(item, IPyNbCell) or not item.config.getoption("grading_manifest"):
        return
    nbfile = item.parent
    if nbfile.kernel is None:
        return
    if nbfile.timed_out or not nbfile.kernel.is_alive():
        if not nbfile.kernel.is_alive():
            nbfile.grading_pending = [*getattr(nbfile, "grading_pending", []), "kernel_restarted"]
            _restart_kernel(nbfile, item)
        nbfile.timed_out = False  # keep grading instead of marking every later cell xfail
    nbfile.kernel.last_reply = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if not isinstance(item, IPyNbCell) or call.when != "call" or not item.config.getoption("grading_manifest"):
        return
    nbfile = item.parent
    info: dict[str, Any] = {}
    for key, value in item.user_properties:
        if key == PROPERTY:
            info = value
    outputs = item.test_outputs or []
    records = [
        json.loads(json.dumps(out["data"][MIME]))  # plain data: xdist ships it to the controller
        for out in outputs
        if out.get("output_type") in ("display_data", "execute_result") and MIME in out.get("data", {})
    ]
    reply = getattr(nbfile.kernel, "last_reply", None) or {}
    error = next((f"{out['ename']}: {ANSI.sub('', str(out['evalue']))}" for out in outputs if out.get("output_type") == "error"), None)
    events: list[str] = []
    if report.passed and reply.get("status") == "error":
        report.outcome = "failed"
        report.longrepr = "the cell raised an error but its traceback was suppressed"
        events.append("suppressed_error")
        error = error or f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')} (traceback suppressed)"
    if call.excinfo is not None and "Timeout of" in str(call.excinfo.value):
        events.append(f"timeout@{info.get('cell_id')}")
        error = f"timed out after {item.config.option.nbval_cell_timeout:g} s"
    if call.excinfo is not None and ("Kernel dead" in str(call.excinfo.value) or call.excinfo.errisinstance(KernelDied)):
        events.append(f"kernel_died@{info.get('cell_id')}")
        error = "the kernel died (the process crashed or exited) while running this cell"
    events = [*getattr(nbfile, "grading_pending", []), *events]
    nbfile.grading_pending = []
    if report.passed:
        _ran[nbfile].append(item.cell.source)
    report.user_properties.append(("grading-result", {"records": records, "error": error, "events": events}))


# -- collecting results (runs on the controller, with or without xdist) ----------------------------

_results: dict[str, dict[str, Any]] = {}
_finished: set[str] = set()
_IS_WORKER = [False]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    info = props.get(PROPERTY)
    if info is None:
        return
    entry = _results.setdefault(info["submission"], {"flags": [], "items": {}, "events": []})
    if "grading-flags" in props:
        entry["flags"] = props["grading-flags"]
    item = entry["items"].setdefault(report.nodeid, {**info, "outcome": "not run", "duration": 0.0, "records": [], "error": None})
    item["duration"] = round(item["duration"] + report.duration, 3)
    if report.when == "call":
        item["outcome"] = report.outcome
        result = props.get("grading-result", {})
        item["records"] = result.get("records", [])
        item["error"] = result.get("error")
        entry["events"].extend(result.get("events", []))
    elif report.when == "setup" and report.failed:
        item["outcome"] = "error"
        item["error"] = ANSI.sub("", str(report.longrepr).strip().splitlines()[-1])[:300] if report.longrepr else "setup failed"
        entry["events"].append(f"setup_error@{info['cell_id']}")
    if report.when == "teardown" and props.get("grading-last") and not _IS_WORKER[0]:
        _finished.add(info["submission"])
        _progress(len(_finished))


def _progress(done: int) -> None:
    total = _TOTAL[0]
    if total <= 0:
        return
    width = 30
    filled = int(width * done / total)
    sys.stderr.write(f"\rgrading [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


_TOTAL = [0]


def pytest_configure(config: pytest.Config) -> None:
    _TOTAL[0] = int(config.getoption("grading_total") or 0)
    _IS_WORKER[0] = hasattr(config, "workerinput")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):  # xdist worker: the controller writes
        return
    target = session.config.getoption("grading_results")
    if not target:
        return
    for entry in _results.values():
        entry["items"] = list(entry["items"].values())
    Path(target).write_text(json.dumps(_results, indent=1, sort_keys=True), encoding="utf-8")
