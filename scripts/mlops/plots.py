"""Charts for the labs and the book: per-slice accuracy, retrain noise against a tolerance, a workflow's stages, contention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    legend: Mapping[str, Any] | None = None,
) -> Figure:
    """Grouped bars: one group per slice (plus overall), one bar per evaluation document.

    With ``tolerance_from`` (a key of ``evaluations``) and ``tolerance``, a tick marks the
    lowest accuracy each slice may fall to before a baseline gate refuses the candidate.
    ``legend`` overrides the legend's keyword arguments (default: lower right, one column).
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
    ax.legend(**{"loc": "lower right", "fontsize": 8, **(legend or {})})
    fig.tight_layout()
    return fig


def noise_band(
    changes: Mapping[str, Sequence[float]],
    *,
    tolerance: float,
    counts: Mapping[str, int] | None = None,
    title: str = "How far equally good retrains move, against the gate's tolerance",
) -> Figure:
    """One strip of dots per slice: each dot is one honest retrain's accuracy change.

    ``changes`` maps a slice to the accuracy changes (retrain minus reference) of every refit,
    for instance ``study.refits[column] - reference`` of a :class:`scripts.mlops.noise.NoiseStudy`.
    The band from ``-tolerance`` to ``+tolerance`` is shaded: a gate with that tolerance refuses
    a retrain whose dot falls below the band. ``counts`` (evaluation rows per slice) label the axis.
    """
    if not changes:
        raise ValueError("noise_band needs at least one slice")
    names = list(changes)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.axhspan(-tolerance, tolerance, color="#cfe3f7", label=f"gate tolerance ±{tolerance:g}")
    ax.axhline(0.0, color="#555555", linewidth=0.8)
    ax.axhline(-tolerance, color="#1f4e79", linewidth=1.2, linestyle="--", label=f"refused below −{tolerance:g}")
    jitter = np.random.default_rng(0)
    for index, name in enumerate(names):
        values = np.asarray(changes[name], dtype=float)
        x = index + jitter.uniform(-0.12, 0.12, size=len(values))
        ax.scatter(x, values, s=22, color="#b35900", edgecolor="black", linewidth=0.4, zorder=3)
    lowest = min(float(np.min(changes[name])) for name in names)
    highest = max(float(np.max(changes[name])) for name in names)
    ax.set_ylim(min(lowest, -tolerance) - 0.01, max(highest, tolerance) + 0.01)
    labels = [f"{name}\n(n={counts[name]})" if counts and name in counts else name for name in names]
    ax.set_xticks(np.arange(len(names)), labels)
    ax.set_ylabel("accuracy change vs. full-data model")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _stages(steps: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """Consecutive steps grouped by the stage number that starts their name (``"3. obtain ..."``)."""
    grouped: list[tuple[str, list[str]]] = []
    for step in steps:
        name = str(step.get("name") or step.get("run") or step.get("uses"))
        number, dot, rest = name.partition(". ")
        label, text = (f"stage {number}", rest) if dot and number.isdigit() else ("set-up", name)
        if grouped and grouped[-1][0] == label:
            grouped[-1][1].append(text)
        else:
            grouped.append((label, [text]))
    return grouped


def pipeline_stages(workflow: Mapping[str, Any], *, title: str = "Deploy-gate pipeline") -> Figure:
    """A workflow's jobs as lanes of stage boxes, with the ``needs:`` edges between jobs.

    ``workflow`` is the document :func:`scripts.mlops.ci_local.load_workflow` returns. Each job is
    one lane (in the order its ``needs:`` imposes); consecutive steps whose names start with the
    same number (``"2. ..."``) share a box, unnumbered steps form a "set-up" box. A job that
    needs another starts under the last box of the job it waits for. The lane's label
    gives the job's id and the permissions it is granted.
    """
    import textwrap

    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from .ci_local import job_order

    jobs = workflow["jobs"]
    order = job_order(jobs)
    fig, ax = plt.subplots(figsize=(10, 1.9 * len(order) + 0.6))
    lanes = {job_id: _stages(jobs[job_id].get("steps") or []) for job_id in order}
    box_w, box_h, step_y = 0.86, 0.78, 1.45
    where: dict[str, tuple[float, float, float]] = {}  # job -> (first x, last x, y)
    for row, job_id in enumerate(order):
        y = -row * step_y
        needs = jobs[job_id].get("needs") or []
        needed = [needs] if isinstance(needs, str) else list(needs)
        # A job that needs others starts under the last stage of the ones it waits for.
        offset = max((where[need][1] for need in needed), default=0.0)
        where[job_id] = (offset, offset + len(lanes[job_id]) - 1, y)
        permissions = jobs[job_id].get("permissions") or {}
        granted = ", ".join(f"{key}: {value}" for key, value in permissions.items()) or "none"
        ax_label = f"job {job_id!r} — permissions: {granted}"
        ax.text(offset - box_w / 2, y + box_h / 2 + 0.06, ax_label, fontsize=8, va="bottom", ha="left")
        for column, (label, texts) in enumerate(lanes[job_id]):
            x = offset + column
            stage = label.startswith("stage")
            ax.add_patch(
                FancyBboxPatch(
                    (x - box_w / 2, y - box_h / 2),
                    box_w,
                    box_h,
                    boxstyle="round,pad=0.02",
                    facecolor="#dbe9f6" if stage else "#eeeeee",
                    edgecolor="#1f4e79" if stage else "#777777",
                )
            )
            body = "\n".join(textwrap.fill(text, 20) for text in texts[:3])
            ax.text(x, y + box_h / 2 - 0.06, label, ha="center", va="top", fontsize=8, weight="bold")
            ax.text(x, y + box_h / 2 - 0.2, body, ha="center", va="top", fontsize=6.3)
            if column:
                ax.add_patch(
                    FancyArrowPatch((x - 1 + box_w / 2, y), (x - box_w / 2, y), arrowstyle="-|>", mutation_scale=10)
                )
        for need in needed:
            _, end, y_from = where[need]
            ax.add_patch(
                FancyArrowPatch(
                    (end, y_from - box_h / 2),
                    (offset, y + box_h / 2 + 0.2),
                    arrowstyle="-|>",
                    mutation_scale=12,
                    color="#b35900",
                )
            )
            ax.text(
                end + 0.06,
                (y_from - box_h / 2 + y + box_h / 2 + 0.2) / 2,
                f"needs: {need}",
                fontsize=8,
                color="#b35900",
            )
    right = max(last for _, last, _ in where.values())
    ax.set_xlim(-0.6, right + 0.6)
    ax.set_ylim(-(len(order) - 1) * step_y - 0.6, 0.75)
    ax.set_axis_off()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def alias_timeline(entries: Sequence[Any], *, title: str = "Alias moves, in the order they were recorded") -> Figure:
    """Where each alias pointed after every recorded move: one step line per alias.

    ``entries`` are :class:`scripts.mlops.promotion.PromotionEntry` records (``seq``, ``alias``,
    ``to_version``, ``action``), for instance ``promotion.history(model)``. The x axis is the
    entry's sequence number, not its time, so the chart does not depend on the clock; rollbacks
    are marked with a red cross and labelled.
    """
    if not entries:
        raise ValueError("alias_timeline needs at least one promotion entry")
    ordered = sorted(entries, key=lambda entry: entry.seq)
    last = ordered[-1].seq
    aliases = list(dict.fromkeys(entry.alias for entry in ordered))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for index, alias in enumerate(aliases):
        moves = [entry for entry in ordered if entry.alias == alias]
        xs = [entry.seq for entry in moves] + [last + 0.5]
        ys = [entry.to_version for entry in moves] + [moves[-1].to_version]
        offset = (index - (len(aliases) - 1) / 2) * 0.06  # keeps two aliases on one version apart
        line = ax.step(xs, [y + offset for y in ys], where="post", linewidth=2, label=f"@{alias}")[0]
        for entry in moves:
            rollback = entry.action == "rollback"
            ax.scatter(
                entry.seq,
                entry.to_version + offset,
                marker="X" if rollback else "o",
                s=70 if rollback else 30,
                color="#c00000" if rollback else line.get_color(),
                zorder=3,
            )
            if rollback:
                ax.annotate(
                    f"rollback → v{entry.to_version}",
                    (entry.seq, entry.to_version + offset),
                    textcoords="offset points",
                    xytext=(4, -14),
                    fontsize=8,
                    color="#c00000",
                )
    versions = sorted({entry.to_version for entry in ordered})
    ax.set_yticks(versions, [f"v{version}" for version in versions])
    ax.set_ylim(versions[0] - 0.6, versions[-1] + 0.6)
    ax.set_xticks([entry.seq for entry in ordered])
    ax.set_xlim(0.5, last + 0.5)
    ax.set_xlabel("promotion history entry (promotion.000001, …)")
    ax.set_ylabel("version the alias points at")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def contention(
    rows: Sequence[Mapping[str, Any]], *, title: str = "Concurrent writers against one tracking server"
) -> Figure:
    """Failed calls and the slowest writer's seconds per number of writers, one line per configuration.

    ``rows`` are the rows of ``bench/results/contention.json`` (:mod:`scripts.mlops.contention`
    measurements with a ``backend``): ``writers``, ``mode``, ``retries``, ``calls``,
    ``failed_calls``, ``slowest_writer_s``. Colour is the backend, the line style the logging
    mode (solid one-by-one, dashed batched), the marker the retry setting. The left panel shows
    failed calls as a share of the calls made; when no configuration failed a call, it says so.
    """
    if not rows:
        raise ValueError("contention needs at least one measured row")
    colours = {"sqlite": "#b35900", "postgres": "#1f4e79"}
    styles = {"one-by-one": "-", "batched": "--"}
    markers = {"off": "o", "on": "s"}
    series: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        series.setdefault((str(row["backend"]), str(row["mode"]), str(row["retries"])), []).append(row)
    fig, (failed_ax, slow_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for (backend, mode, retries), points in series.items():
        points = sorted(points, key=lambda row: int(row["writers"]))
        writers = [int(row["writers"]) for row in points]
        style = {
            "color": colours.get(backend, "#555555"),
            "linestyle": styles.get(mode, ":"),
            "marker": markers.get(retries, "^"),
            "markersize": 5,
            "label": f"{backend}, {mode}, retries {retries}",
        }
        failed_ax.plot(writers, [100 * row["failed_calls"] / max(1, row["calls"]) for row in points], **style)
        slow_ax.plot(writers, [row["slowest_writer_s"] for row in points], **style)
    counts = sorted({int(row["writers"]) for row in rows})
    for ax in (failed_ax, slow_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(count) for count in counts])
        ax.minorticks_off()
        ax.set_xlabel("writers at once")
    failed_ax.set_ylabel("failed calls (% of calls made)")
    failed_ax.set_title("Failed calls", fontsize=10)
    if not any(row["failed_calls"] for row in rows):
        failed_ax.set_ylim(-1, 10)
        failed_ax.text(0.5, 0.55, f"no failed call in any of\nthe {len(rows)} configurations", ha="center",
                       transform=failed_ax.transAxes, fontsize=9)  # fmt: skip
    slow_ax.set_ylabel("slowest writer (s)")
    slow_ax.set_title("Slowest writer", fontsize=10)
    slow_ax.set_ylim(bottom=0)
    slow_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), handlelength=3.5, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
