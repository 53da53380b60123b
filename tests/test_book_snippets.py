"""The MLflow snippets that chapters show in prose run against a real MLflow 3 workspace.

No lab executes them, so without this test an API rename or a wrong argument in the prose would
go unnoticed. Each snippet is taken from the chapter's Markdown as it is (fenced or indented
code block), run in a temporary tracking store with the names it expects, and its claims are
checked: the copy becomes a new version of the other registered model, and the thresholds pass
a candidate above the floor and refuse one below it.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scripts.mlops.train import pip_requirements

REPO = Path(__file__).resolve().parents[1]


def code_block(chapter: str, marker: str) -> str:
    """The code block (fenced, or indented by four spaces) of ``book/<chapter>`` that contains ``marker``.

    Fences are read line by line: a code fence (```python, ```{code-cell} ...) is a block; the
    body of a directive (```{note} ...) is prose, whose indented runs are blocks too.
    """
    text = (REPO / "book" / chapter).read_text()
    blocks: list[str] = []
    prose: list[str] = []
    fence: list[str] | None = None
    is_code = False
    for line in text.splitlines():
        if fence is None and line.startswith("```"):
            info = line[3:].strip()
            fence, is_code = [], not info.startswith("{") or info.startswith("{code-cell")
            if not is_code:
                prose.append("")  # a directive's body starts a new paragraph
        elif fence is not None and line.strip() == "```":
            if is_code:
                blocks.append("\n".join(fence) + "\n")
            else:
                prose.extend([*fence, ""])
            fence = None
        elif fence is not None:
            fence.append(line)
        else:
            prose.append(line)
    current: list[str] = []  # indented blocks: runs of lines after a blank line
    for previous, line in zip(["", *prose], [*prose, ""], strict=True):  # "" flushes a block at the end
        if line.startswith("    ") and (current or not previous.strip()):
            current.append(line)
        elif current:
            blocks.append(textwrap.dedent("\n".join(current)) + "\n")
            current = []
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"book/{chapter}: expected one code block with {marker!r}, found {len(found)}: {found}"
    return found[0]


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    mlflow.set_experiment(experiment_id="0")  # not the experiment an earlier test made active in its store
    yield uri
    if mlflow.active_run() is not None:
        mlflow.end_run()


def test_copy_model_version_snippet_copies_into_the_production_model(tracking: str) -> None:
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    snippet = code_block("01-staging-vs-production.md", "copy_model_version")
    call = re.search(r'copy_model_version\("models:/([^@"]+)@(\w+)", "([^"]+)"\)', snippet)
    assert call, f"the snippet names a source alias and a destination model: {snippet!r}"
    staging_name, alias, production_name = call.groups()

    client = MlflowClient()
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    with mlflow.start_run():
        # Pinned requirements (as the toolkit logs them): MLflow would otherwise infer them in a subprocess.
        mlflow.sklearn.log_model(model, name="model", registered_model_name=staging_name,
                                 pip_requirements=pip_requirements())  # fmt: skip
    client.set_registered_model_alias(staging_name, alias, "1")
    namespace = {"client": client}
    exec(compile(snippet, "book/01-staging-vs-production.md", "exec"), namespace)  # noqa: S102 - the book's own code

    copies = client.search_model_versions(f"name = '{production_name}'")
    assert [str(version.version) for version in copies] == ["1"], "the copy is the production model's first version"
    assert staging_name in copies[0].source, f"the copy links back to its source: {copies[0].source}"
    loaded = mlflow.pyfunc.load_model(f"models:/{production_name}/1")
    assert list(loaded.predict(pd.DataFrame([[0.0], [3.0]]))) == [0, 1], "the copy serves the same model"


def _static_result(accuracy_target: float) -> Any:
    """An MLflow evaluation of fixed predictions (no model) whose accuracy is ``accuracy_target``."""
    import mlflow

    labels = [0, 1] * 50
    wrong = round((1 - accuracy_target) * len(labels))
    predictions = [1 - label if index < wrong else label for index, label in enumerate(labels)]
    frame = pd.DataFrame({"label": labels, "prediction": predictions})
    with mlflow.start_run():
        return mlflow.models.evaluate(data=frame, predictions="prediction", targets="label", model_type="classifier")


def test_metric_threshold_snippet_passes_above_the_floor_and_refuses_below(tracking: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    snippet = code_block("02-quality-gates.md", "MetricThreshold")
    baseline_result = _static_result(0.79)
    above, below = _static_result(0.78), _static_result(0.70)
    assert above.metrics["accuracy_score"] == pytest.approx(0.78)

    exec(compile(snippet, "book/02-quality-gates.md", "exec"),  # noqa: S102 - the book's own code
         {"mlflow": mlflow, "candidate_result": above, "baseline_result": baseline_result})
    with pytest.raises(ModelValidationFailedException, match="accuracy_score"):
        exec(compile(snippet, "book/02-quality-gates.md", "exec"),  # noqa: S102
             {"mlflow": mlflow, "candidate_result": below, "baseline_result": baseline_result})

    # The snippet's comment: "may lose at most 0.02" cannot be written as a MetricThreshold.
    for change in (-0.02, 0):
        with pytest.raises(MlflowException, match="min_absolute_change"):
            MetricThreshold(threshold=0.75, min_absolute_change=change, greater_is_better=True)
