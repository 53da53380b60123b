"""Run a notebook top to bottom in a fresh kernel (nbclient), in its own folder.

Used to refresh the stored outputs of reference notebooks after editing them (nbval later
compares every re-run against those outputs) and by tests that need a notebook's outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

DEFAULT_TIMEOUT = 180  # seconds per cell


def run(
    path: str | Path,
    *,
    allow_errors: bool = False,
    timeout: int = DEFAULT_TIMEOUT,
    cwd: str | Path | None = None,
    kernel_name: str = "python3",
) -> nbformat.NotebookNode:
    """Execute the notebook at ``path`` and return it with outputs (the file is not changed).

    The kernel starts in ``cwd`` (default: the notebook's folder), so relative workspace paths
    behave as they do for a student. With ``allow_errors=False`` the first failing cell raises
    ``nbclient.exceptions.CellExecutionError``. ``kernel_name="python3-forked"`` forks the kernel
    from a warm interpreter (:mod:`scripts.forkkernel`); stored outputs are refreshed with the
    default, a fresh kernel.
    """
    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        # What nbclient gives a kernel named python3 (an in-memory IPython history), for any name.
        extra_arguments=["--HistoryManager.hist_file=:memory:"],
        allow_errors=allow_errors,
        record_timing=False,
        resources={"metadata": {"path": str(Path(cwd) if cwd else path.parent)}},
    )
    client.execute()
    return nb


def refresh(path: str | Path, *, timeout: int = DEFAULT_TIMEOUT) -> Path:
    """Re-execute a reference notebook and store its outputs in place."""
    path = Path(path)
    nb = run(path, timeout=timeout)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return path
