"""The chapters' figures, computed from the project when the book is built.

Each chapter that shows a figure is a MyST Markdown notebook with one hidden code cell calling
one function of this module; Jupyter Book executes it (and caches the result, so a warm build
does not run it again). Every function runs the labs' own code (data, train, noise, inject,
the workflow parser) on data files in a temporary folder (and, where it needs the registry, a
throw-away MLflow workspace there too), draws with
:mod:`scripts.mlops.plots` and returns the closed figure, which the cell then displays once::

    from scripts import book_charts
    book_charts.lab00_versions()

Everything is seeded, so a figure only changes when the project does. The one exception to
"computed at build time" is chapter 05's contention figure, a measurement of many minutes: it
is drawn from the committed ``bench/results/contention.json``.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "deploy-gate.yml"
CONTENTION = REPO / "bench" / "results" / "contention.json"
MODEL_NAME = "churn-classifier"


@contextmanager
def _workspace(name: str) -> Iterator[dict[str, Path]]:
    """A fresh lab workspace in a temporary folder (never the repository); yields its data files."""
    from scripts.mlops import data
    from scripts.mlops.workspace import open_workspace

    # MLflow reports each registration on stderr; a figure cell's output is the figure alone.
    with tempfile.TemporaryDirectory(prefix="book-figures-", ignore_cleanup_errors=True) as root:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            workspace = open_workspace(name, root=root)
            yield data.write_datasets(workspace.data_dir)


@contextmanager
def _datasets() -> Iterator[dict[str, Path]]:
    """The labs' data files, written into a temporary folder (for figures that log nothing to MLflow)."""
    from scripts.mlops import data

    with tempfile.TemporaryDirectory(prefix="book-figures-") as root:
        yield data.write_datasets(root)


def _done(fig: Figure) -> Figure:
    """Close ``fig`` so the notebook shows it once: as the cell's value, not also as pyplot's."""
    plt.close(fig)
    return fig


def lab00_versions() -> Figure:
    """Chapter 00: per-segment accuracy of Lab 00's two model families (logistic regression,
    gradient boosting), trained on the *next* month's batch (``churn_v2``).

    Lab 00 trains both on ``churn_v1`` and asks the learner which segment version 1 serves worst
    and which family serves each segment better (Exercises 00.1 and 00.2); drawn from the same
    batch, this figure would print those answers. From ``churn_v2`` it teaches the same lesson
    (overall accuracies close, the winner changes with the segment) with other numbers and another
    per-segment winner. It calls :func:`scripts.mlops.train.fit` and
    :func:`scripts.mlops.evaluate.evaluate` directly, as ``train_and_log`` does, without the MLflow
    logging, which would cost most of the build time and change nothing drawn.
    """
    from scripts.mlops import data, evaluate, plots, train

    with _datasets() as paths:
        train_frame, eval_frame = data.load(paths["v2"]), data.load(paths["eval"])
    configs = {
        "logreg (churn_v2)": train.TrainConfig(model="logreg", seed=42),
        "hgb (churn_v2)": train.TrainConfig(model="hgb", seed=42),
    }
    documents = {
        label: evaluate.evaluate(train.fit(train_frame, config), eval_frame) for label, config in configs.items()
    }
    return _done(plots.slice_accuracy(documents, title="Per-segment accuracy on the frozen evaluation set"))


def lab01_aliases() -> Figure:
    """Lab 01: a promotion history (v1 → v2 → v3 through @staging and @production, then two rollbacks).

    One model is trained and registered three times (the same logged model: versions differ only
    in number), then moved with :func:`scripts.mlops.promotion.promote` and
    :func:`~scripts.mlops.promotion.rollback`, with a fixed clock, and the recorded history is drawn.
    """
    from datetime import UTC, datetime, timedelta

    import mlflow

    from scripts.mlops import plots, promotion, train

    ticks = iter(range(100))

    def clock() -> datetime:
        return datetime(2026, 1, 5, 9, 0, tzinfo=UTC) + timedelta(hours=next(ticks))

    with _workspace("book-01") as paths:
        first = train.train_and_log(
            paths["v1"], paths["eval"], train.TrainConfig(model="logreg", seed=42), register=MODEL_NAME
        )
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            versions = [first.version] + [
                int(mlflow.register_model(first.model_uri, MODEL_NAME).version) for _ in range(2)
            ]
            for version in versions:
                for alias in ("staging", "production"):
                    promotion.promote(MODEL_NAME, int(version or 0), alias, actor="release-bot", clock=clock)
            for _ in range(2):
                promotion.rollback(MODEL_NAME, "production", actor="on-call", clock=clock)
        entries = promotion.history(MODEL_NAME)
    return _done(plots.alias_timeline(entries, title="A promotion history: three releases, then two rollbacks"))


def lab02_noise() -> Figure:
    """Lab 02: how far ten bootstrap refits move each segment, against the gate's tolerance."""
    from scripts.mlops import data, gate, noise, plots

    with _datasets() as paths:
        train_frame, eval_frame = data.load(paths["v1"]), data.load(paths["eval"])
    study = noise.measure_noise(train_frame, eval_frame, refits=10, seed=0)
    spread = study.spread()
    changes = {column: (study.refits[column] - spread.loc[column, "reference"]).tolist() for column in study.refits}
    counts = {column: int(spread.loc[column, "n"]) for column in study.refits}
    return _done(
        plots.noise_band(
            changes,
            tolerance=gate.DEFAULT_TOLERANCE,
            counts=counts,
            title="Ten honest retrains (bootstrap refits) against the tolerance Lab 02 adopts",
        )
    )


def lab03_regression() -> Figure:
    """Lab 03: the committed baseline against the planted slice regression, with the gate's floor per slice."""
    from scripts.mlops import baseline_refresh, gate, inject, plots, train

    baseline = gate.load_evaluation(baseline_refresh.BASELINE_PATH, "baseline")
    with _workspace("book-03") as paths:
        production = train.train_and_log(
            paths["v1"], paths["eval"], train.TrainConfig(model="logreg", seed=42), register=MODEL_NAME
        )
        candidate = inject.preview_slice_corruption(
            f"models:/{MODEL_NAME}/{production.version}", inject.LAB_SLICE, inject.LAB_FRACTION, paths["eval"], seed=0
        )
    label = f"baseline (production v{baseline['version']})"
    return _done(
        plots.slice_accuracy(
            {label: baseline, f"candidate ({inject.LAB_FRACTION:.0%} of {inject.LAB_SLICE} flipped)": candidate},
            title="Planted regression: overall barely moves, one segment falls through its floor",
            tolerance_from=label,
            tolerance=float(inject.CATALOGUE_POLICY["tolerance"]),
            legend={"loc": "upper center", "ncol": 3},
        )
    )


def lab04_pipeline() -> Figure:
    """Lab 04: the deploy-gate workflow's jobs and stages, read from the workflow file itself."""
    from scripts.mlops import ci_local, plots

    workflow = ci_local.load_workflow(WORKFLOW)
    return _done(plots.pipeline_stages(workflow, title=f"{WORKFLOW.name}: jobs, stages and what each job may do"))


def lab05_contention() -> Figure:
    """Lab 05: SQLite against PostgreSQL behind one ``mlflow server`` under concurrent writers.

    Drawn from the committed measurement ``bench/results/contention.json`` (written by
    ``bench/bench_contention.py``, which takes many minutes, so the build only reads it): failed
    calls and the slowest writer per number of writers, for each backend, logging mode and retry
    setting.
    """
    import json

    from scripts import book_figures
    from scripts.mlops import plots

    document = json.loads(CONTENTION.read_text())
    machine = document["machine"]
    title = (
        f"{document['metrics']} metric values per writer, {machine['cpus']} shared cores "
        f"(load average {book_figures.load_range(document)}), {machine['date'][:10]}"
    )
    return _done(plots.contention(document["rows"], title=title))
