"""Record the answer key: run a reference solution through the grader and keep what it gives.

``python -m scripts.grading record [LAB ...]`` runs each lab's reference solution exactly as a
submission is run (sandboxed when bubblewrap works here), and writes every judgment's value to
``scripts/grading/manifests/<lab>.expected.json`` -- the trusted side of every comparison.
The labs are seeded, so a re-run records the same values; the file also carries the SHA-256 of
the manifest it was recorded for, and the tests refuse a key that is older than its manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import judge, plan, sandbox, session
from .assign import MANIFESTS, SOLUTIONS
from .grade import GradingError, database, manifest_for
from .zygote import shared as shared_zygote


def manifest_sha(manifest_path: Path) -> str:
    return hashlib.sha256(manifest_path.read_bytes()).hexdigest()


def key_path(manifest_path: Path) -> Path:
    return manifest_path.with_name(f"{manifest_path.stem}.expected.json")


def record(lab: str, *, timeout: float = 180.0, sandboxed: bool | None = None) -> Path:
    """Run lab ``lab``'s solution and write its answer key; fail if any judgment has no value."""
    manifest_path = manifest_for(lab)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if sandboxed is None:
        try:
            sandbox.check_works()
            sandboxed = True
        except sandbox.SandboxUnavailable:
            sandboxed = False
    cells = json.loads((SOLUTIONS / manifest["notebook"]).read_text(encoding="utf-8"))["cells"]
    steps = plan.build(cells, manifest)
    limits = sandbox.Limits()
    warm = sandboxed and os.environ.get("MLOPS_COLD", "") in ("", "0")
    zygote = shared_zygote() if warm else None  # as `grade` runs submissions (see scripts.grading.zygote)
    with tempfile.TemporaryDirectory(prefix="record-") as scratch:
        root = Path(scratch)
        cache = session.prepare_cache(root / "cache")
        workdir = root / "work"
        workdir.mkdir()
        outcome = session.run(
            steps,
            workdir,
            root / "runner.log",
            timeout=timeout,
            sandboxed=sandboxed,
            limits=limits,
            cache=cache,
            database=database(manifest),
            zygote=zygote,
        )
        facts = session.probe(outcome.snapshots, root / "facts", sandboxed=sandboxed, limits=limits)
        log = (root / "runner.log").read_text(errors="replace")[-2000:]
    values: dict[str, Any] = {}
    missing: list[str] = []
    for cell, entries in plan.judgments(manifest).items():
        for entry in entries:
            value, why = judge.observed(entry, outcome.answers, facts.get(cell, {}))
            if value is judge.MISSING:
                missing.append(f"{entry['id']}: {why}")
            else:
                values[entry["id"]] = value
    failed = [f"{cell}: {info['error']}" for cell, info in outcome.cells.items() if info["status"] != "ok"]
    if missing or failed:
        raise GradingError(
            f"the reference solution of lab {lab} did not give every answer:\n  "
            + "\n  ".join(failed + missing)
            + (f"\nrunner log:\n{log}" if not outcome.cells else "")
        )
    path = key_path(manifest_path)
    document = {"lab": manifest["lab"], "manifest_sha256": manifest_sha(manifest_path), "values": values}
    path.write_text(json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def labs() -> list[str]:
    return sorted(
        path.stem[:2] for path in MANIFESTS.glob("[0-9][0-9]-*.json") if not path.name.endswith(".expected.json")
    )
