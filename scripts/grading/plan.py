"""Match a submitted notebook to its lab and decide what runs: the student's cells, the canonical
locked cells (setup, checks, checkpoints), and after which cell each answer is exported.

Cells are matched by their nbformat id. A notebook saved by an older Jupyter (nbformat 4.4)
has no ids; its cells are matched by content instead: a locked cell by its exact source, an
exercise cell by its ``# Exercise NN.M`` line. Everything else is the student's own code and
runs as written, in the submitted order; edited locked cells run in their original form
(flag ``tampered``), deleted ones are put back after their nearest surviving predecessor
(flags ``tampered`` and ``restored:<ids>``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .authoring import sha256

EXERCISE_LINE = re.compile(r"^#\s*Exercise\s+(\d{2}\.\d+)\b", re.MULTILINE)
MARKERS = re.compile(r"NBVAL_|nbval-|raises-exception")
# Code that reaches into the kernel, the interpreter or other processes: flagged for a human
# look, never penalised (points come from the judgments alone).
SUSPICIOUS = re.compile(
    r"get_ipython\(\)\.(events|set_custom_exc|showtraceback|display_pub)|sys\.modules|builtins|/proc/|os\.kill|"
    r"signal\.signal|setsid|start_new_session|log_metric\(|solutions/|\.ipynb['\"]"
)


@dataclass
class Step:
    """One cell to run, and the answers to export after it (judgment id -> expression)."""

    id: str
    source: str
    role: str
    answers: dict[str, str] = field(default_factory=dict)
    snapshot: bool = False  # copy the workspace's registry right after this cell

    def job(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "answers": self.answers, "snapshot": self.snapshot}


@dataclass
class Plan:
    steps: list[Step]
    flags: set[str]


def judgments(manifest: dict[str, Any], extra: Sequence[dict[str, Any]] = ()) -> dict[str, list[dict[str, Any]]]:
    """Every judgment of the lab, by the cell after which its answers are exported."""
    found: dict[str, list[dict[str, Any]]] = {}
    for cell in manifest["cells"]:
        for entry in cell.get("lab", {}).get("judge", []) if cell.get("role") == "lab-check" else []:
            found.setdefault(cell["id"], []).append(
                {**entry, "id": f"{cell['id']}/{entry['id']}", "exercise": cell["lab"]["exercise"], "cell": cell["id"]}
            )
    for hidden in manifest.get("hidden", []):  # lab-hidden cells: judged after their predecessor
        for entry in hidden.get("judge", []):
            found.setdefault(hidden["after"], []).append(
                {
                    **entry,
                    "id": f"{hidden['id']}/{entry['id']}",
                    "exercise": hidden["exercise"],
                    "cell": hidden["after"],
                    "held_out": True,
                    "hint": entry.get("hint", hidden.get("hint", "")),
                }
            )
    for entry in extra:
        found.setdefault(entry["after"], []).append({**entry, "cell": entry["after"]})
    return found


def _content_ids(cells: list[Any], manifest: dict[str, Any]) -> dict[int, str]:
    """Manifest ids for cells that carry none, matched by content."""
    by_sha = {cell["sha256"]: cell["id"] for cell in manifest["cells"] if "sha256" in cell and cell["type"] == "code"}
    by_exercise = {cell["exercise"]: cell["id"] for cell in manifest["cells"] if cell.get("role") == "lab-exercise"}
    taken: set[str] = set()
    matched: dict[int, str] = {}
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code" or cell.get("id"):
            continue
        source = _source(cell)
        cell_id = by_sha.get(sha256(source))
        if cell_id is None:
            hit = EXERCISE_LINE.search(source)
            cell_id = by_exercise.get(hit.group(1)) if hit else None
        if cell_id is not None and cell_id not in taken:
            matched[index] = cell_id
            taken.add(cell_id)
    return matched


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def build(cells: list[Any], manifest: dict[str, Any], extra: Sequence[dict[str, Any]] = ()) -> Plan:
    """The steps to run for a submission's raw cells (dicts from the notebook JSON)."""
    canonical = {cell["id"]: cell for cell in manifest["cells"]}
    locked = {cid: cell for cid, cell in canonical.items() if "sha256" in cell and cell["type"] == "code"}
    flags: set[str] = set()
    content = _content_ids(cells, manifest)
    if content:
        flags.add("matched_by_content")
    steps: list[Step] = []
    seen: set[str] = set()
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = _source(cell)
        cell_id = str(cell.get("id") or content.get(index) or "")
        spec = canonical.get(cell_id)
        if spec is not None and cell_id in locked and cell_id not in seen:
            if sha256(source) != spec["sha256"]:
                flags.add("tampered")
            steps.append(Step(cell_id, spec["source"], spec["role"]))
        else:
            if spec is None or cell_id in seen:
                cell_id = f"student-{index}"
            if MARKERS.search(source + repr(cell.get("metadata", {}).get("tags", []))):
                flags.add("ignored_markers")
            if SUSPICIOUS.search(source):
                flags.add("suspicious")
            role = "exercise" if spec is not None and spec.get("role") == "lab-exercise" else "student"
            steps.append(Step(cell_id, source, role))
        seen.add(cell_id)
    restored = [cid for cid in (cell["id"] for cell in manifest["cells"]) if cid in locked and cid not in seen]
    for cid in restored:
        steps.insert(_insert_at(steps, locked[cid], canonical), Step(cid, locked[cid]["source"], locked[cid]["role"]))
    if restored:
        flags.update({"tampered", "restored:" + "+".join(restored)})
    where = judgments(manifest, extra)
    for step in steps:
        for entry in where.get(step.id, []):
            if "answer" in entry:
                step.answers[entry["id"]] = entry["answer"]
            if "fact" in entry or "expect_fact" in entry:
                step.snapshot = True
    return Plan(steps, flags)


def _insert_at(steps: list[Step], spec: dict[str, Any], canonical: dict[str, Any]) -> int:
    """Index after the nearest predecessor (in manifest order) that is present."""
    present = {step.id: index for index, step in enumerate(steps)}
    previous = spec.get("after")
    while previous is not None:
        if previous in present:
            return present[previous] + 1
        previous = canonical.get(previous, {}).get("after")
    return 0
