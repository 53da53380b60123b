"""Re-evaluate a bundle's model on the frozen evaluation set, here or in a parallel process.

The audit's most expensive question is "do the metrics describe the bundled model?": it needs
scikit-learn and skops to restore the model, while every other question needs MLflow and its
registry store. Each of those import sets costs seconds, so the command line runs this
re-evaluation in a second process (:class:`Pending`) that imports only skops, scikit-learn and
pandas, on the machine's second core, while the first answers the registry's questions::

    python -m scripts.mlops.audit BUNDLE/model     # prints one JSON document

A model saved by MLflow's scikit-learn flavor in skops format (everything this project trains)
is restored the way MLflow's own loader does it: ``skops.io.load`` with the trusted types its
``MLmodel`` names (:mod:`scripts.mlops.model_files`, shared with the model server). Any other
model goes through ``mlflow.pyfunc.load_model``. Both processes run the same
:func:`reevaluate`, so the answer does not depend on where it ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from ..model_files import RestoreError, load_model_folder

__all__ = ["Pending", "RestoreError", "load_bundled_model", "main", "reevaluate"]

_ROOT = Path(__file__).resolve().parents[3]  # the folder that holds scripts/

#: How long the command line waits for the parallel re-evaluation before failing the check.
TIMEOUT_SECONDS = 300.0


def load_bundled_model(model_dir: str | Path) -> Any:
    """Restore the model in ``model_dir`` (RestoreError says why it cannot be)."""
    return load_model_folder(model_dir)


def reevaluate(model_dir: str | Path) -> dict[str, Any]:
    """The bundled model's evaluation on the frozen set, with the set's fingerprint."""
    from .. import data, evaluate

    model = load_bundled_model(model_dir)
    with tempfile.TemporaryDirectory(prefix="audit-") as scratch:
        paths = data.write_datasets(scratch, batches=("eval",))
        return evaluate.evaluate_file(model, paths["eval"])


@dataclass
class Pending:
    """A re-evaluation running in a second process; :meth:`result` waits for it."""

    process: subprocess.Popen[str]

    @classmethod
    def start(cls, bundle_folder: str | Path) -> Pending | None:
        """Start re-evaluating ``bundle_folder``'s model; None if it has no model folder."""
        from ..bundle import MODEL_DIR

        model_dir = Path(bundle_folder).resolve() / MODEL_DIR
        if not model_dir.is_dir():
            return None  # the audit's own checks say what is missing
        # The same toolkit as this process, whatever the working folder.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.mlops.audit", str(model_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        return cls(process)

    def result(self, timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
        """The evaluation; RestoreError or MlopsError exactly as :func:`reevaluate` raised it."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise MlopsError(f"the re-evaluation did not finish within {timeout:.0f} s") from None
        try:
            answer = json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            tail = " ".join(err.strip().splitlines()[-3:]) or "no output"
            raise MlopsError(f"the re-evaluation process exited {self.process.returncode}: {tail}") from None
        if "evaluation" in answer:
            return dict(answer["evaluation"])
        error = RestoreError if answer.get("restore") else MlopsError
        raise error(str(answer.get("error")))

    def stop(self) -> None:
        """Stop the process if it still runs (the audit ended early or failed)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def main(argv: list[str] | None = None) -> int:
    """Print the re-evaluation of the model folder in ``argv[0]`` as one JSON line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scripts.mlops.audit MODEL_DIR", file=sys.stderr)
        return 1
    import skops.io  # noqa: F401 - before anything else: see cli.common.import_skops_first

    try:
        answer: dict[str, Any] = {"evaluation": reevaluate(args[0])}
    except RestoreError as exc:
        answer = {"error": str(exc), "restore": True}
    except MlopsError as exc:
        answer = {"error": str(exc).splitlines()[0], "restore": False}
    print(json.dumps(answer))
    return 0
