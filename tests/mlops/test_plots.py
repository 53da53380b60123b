"""The chart functions the labs and the book's figures draw with (cheap: no training)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from scripts.mlops import ci_local, plots

REPO = Path(__file__).resolve().parents[2]


def _texts(fig: plt.Figure) -> list[str]:
    return [text.get_text() for ax in fig.axes for text in ax.texts]


def test_noise_band_shades_the_tolerance_and_plots_every_refit() -> None:
    changes = {"student": [-0.03, 0.0, 0.01], "overall": [-0.002, 0.001, 0.0]}
    fig = plots.noise_band(changes, tolerance=0.02, counts={"student": 432, "overall": 2400})
    ax = fig.axes[0]
    assert sum(len(collection.get_offsets()) for collection in ax.collections) == 6
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["student\n(n=432)", "overall\n(n=2400)"]
    low, high = ax.get_ylim()
    assert low < -0.03 and high > 0.02
    plt.close(fig)
    with pytest.raises(ValueError):
        plots.noise_band({}, tolerance=0.02)


def test_stages_group_numbered_steps_and_set_up_steps() -> None:
    steps = [{"name": "check out"}, {"name": "1. a"}, {"name": "1. b"}, {"name": "2. c"}, {"run": "echo"}]
    assert plots._stages(steps) == [("set-up", ["check out"]), ("stage 1", ["a", "b"]), ("stage 2", ["c"]), ("set-up", ["echo"])]


def test_pipeline_stages_draws_the_deploy_gate_workflow() -> None:
    workflow = ci_local.load_workflow(REPO / ".github" / "workflows" / "deploy-gate.yml")
    fig = plots.pipeline_stages(workflow)
    texts = _texts(fig)
    for stage in range(1, 7):
        assert f"stage {stage}" in texts
    assert "needs: gate" in texts
    assert any(text.startswith("job 'release'") for text in texts)
    plt.close(fig)


def test_alias_timeline_marks_rollbacks_and_orders_by_entry() -> None:
    from scripts.mlops.promotion import PromotionEntry

    def entry(seq: int, alias: str, to: int, action: str = "promote") -> PromotionEntry:
        return PromotionEntry(seq, alias, None, to, "ci", "2026-01-01T00:00:00+00:00", action)  # type: ignore[arg-type]

    entries = [entry(3, "production", 1, "rollback"), entry(1, "production", 1), entry(2, "production", 2)]
    fig = plots.alias_timeline(entries)
    ax = fig.axes[0]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["v1", "v2"]
    assert _texts(fig) == ["rollback → v1"]
    plt.close(fig)
    with pytest.raises(ValueError):
        plots.alias_timeline([])


def _contention_rows(failed: int = 0) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for backend in ("sqlite", "postgres"):
        for mode in ("one-by-one", "batched"):
            for retries in ("off", "on"):
                for writers in (4, 8, 16):
                    calls = writers * (1 if mode == "batched" else 50)
                    rows.append({"backend": backend, "mode": mode, "retries": retries, "writers": writers,
                                 "calls": calls, "failed_calls": 0, "slowest_writer_s": writers / 2})  # fmt: skip
    rows[2]["failed_calls"] = failed  # sqlite, one by one, retries off, 16 writers
    return rows


def test_contention_draws_every_configuration_and_says_when_no_call_failed() -> None:
    fig = plots.contention(_contention_rows())
    failed_ax, slow_ax = fig.axes
    assert len(slow_ax.get_lines()) == len(failed_ax.get_lines()) == 8, "backend x mode x retries"
    assert [tick.get_text() for tick in slow_ax.get_xticklabels()] == ["4", "8", "16"]
    assert list(slow_ax.get_lines()[0].get_ydata()) == [2.0, 4.0, 8.0]
    assert any(text.startswith("no failed call in any of\nthe 24 configurations") for text in _texts(fig))
    plt.close(fig)


def test_contention_shows_failures_as_a_share_of_the_calls() -> None:
    fig = plots.contention(_contention_rows(failed=80))
    failed_ax = fig.axes[0]
    assert list(failed_ax.get_lines()[0].get_ydata()) == [0.0, 0.0, 10.0], "80 of 800 calls"
    assert not any("no failed call" in text for text in _texts(fig))
    plt.close(fig)
    with pytest.raises(ValueError):
        plots.contention([])
