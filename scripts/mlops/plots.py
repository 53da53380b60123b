"""Charts for the labs: per-slice accuracy of one or more models side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def slice_accuracy(
    evaluations: Mapping[str, Mapping[str, Any]],
    *,
    title: str = "Accuracy by customer segment",
    tolerance_from: str | None = None,
    tolerance: float | None = None,
) -> Figure:
    """Grouped bars: one group per slice (plus overall), one bar per evaluation document.

    With ``tolerance_from`` (a key of ``evaluations``) and ``tolerance``, a tick marks the
    lowest accuracy each slice may fall to before a baseline gate refuses the candidate.
    """
    if not evaluations:
        raise ValueError("slice_accuracy needs at least one evaluation document")
    first = next(iter(evaluations.values()))
    slices = sorted(first["buckets"]) + ["overall"]
    width = 0.8 / len(evaluations)
    x = np.arange(len(slices))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for index, (label, evaluation) in enumerate(evaluations.items()):
        values = [evaluation["buckets"].get(s, {}).get("accuracy", np.nan) for s in slices[:-1]]
        values.append(evaluation["overall"]["accuracy"])
        bars = ax.bar(x + (index - (len(evaluations) - 1) / 2) * width, values, width, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    if tolerance_from is not None and tolerance is not None:
        base = evaluations[tolerance_from]
        floors = [base["buckets"][s]["accuracy"] - tolerance for s in slices[:-1]]
        floors.append(base["overall"]["accuracy"] - tolerance)
        ax.scatter(x, floors, marker="_", s=600, color="black", zorder=3, label=f"{tolerance_from} − {tolerance:g}")
    counts = [f"{s}\n(n={first['buckets'][s]['n']})" for s in slices[:-1]] + [f"overall\n(n={first['overall']['n']})"]
    ax.set_xticks(x, counts)
    low = min(0.5, *(e["overall"]["accuracy"] for e in evaluations.values()))
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
