"""What the benchmarks in ``bench/`` record beside their numbers, and where they write them.

Each ``bench/bench_*.py`` runs as a script (``python bench/bench_NAME.py``), so this folder is
first on ``sys.path`` and they import this module as ``_results``.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """The machine a result was measured on, and how busy it was then (load averages over 1, 5, 15 min)."""
    return {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def save(name: str, document: dict[str, Any]) -> Path:
    """Write ``document`` to ``bench/results/NAME.json`` (indented, one trailing newline) and say so."""
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out}")
    return out
