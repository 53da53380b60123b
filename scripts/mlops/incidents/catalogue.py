"""The incident catalogue: each failure of the troubleshooting sources, adapted to the churn model.

Every entry breaks a lab in one way, shows the real symptom and knows its fix and its anti-fix
(the "fix" that makes the symptom go away by destroying something). ``python -m scripts.mlops
incidents`` lists them; :func:`scripts.mlops.incidents.drill` runs one end to end.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MlopsError
from ..procs import free_port, stop_session
from .base import COMMAND_TIMEOUT, Incident, Lab, Symptom, Verdict, run, run_module

if TYPE_CHECKING:
    import threading

    import pandas as pd

    from ..ci_local import WorkflowRun

# --- shared pieces -------------------------------------------------------------------------------

#: A process that holds a listening socket on a free port, prints the port and waits. Its command
#: line ends with ``mlflow server``, like the stale server it stands for, so ``pkill -f "mlflow
#: server"`` would match it (and every other matching process).
_HOLDER = (
    "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); time.sleep(3600)"
)
#: A process that takes SQLite's exclusive lock on a database and keeps it (an interrupted writer).
_LOCKER = (
    "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
    "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(3600)"
)
#: One health request with a short timeout, as a CI step would send it (exit 1 and a traceback if refused).
_HEALTH = "import sys, httpx; r = httpx.get(sys.argv[1], timeout=2); r.raise_for_status(); print(r.text)"


def _python() -> str:
    return sys.executable


def _write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def _sha256(path: Path) -> str:
    from ..data import fingerprint

    return fingerprint(path)


# --- 1. label spelling ---------------------------------------------------------------------------

#: Spellings a label column arrives in, mapped to the canonical labels (after strip + lower-case).
LABEL_SYNONYMS: dict[str, str] = {
    "no": "no",
    "yes": "yes",
    "n": "no",
    "y": "yes",
    "0": "no",
    "1": "yes",
    "false": "no",
    "true": "yes",
    "stayed": "no",
    "churned": "yes",
}


def normalise_labels(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The fix at load time: map every known spelling of the churn label to ``no``/``yes``.

    Unknown spellings are left as they are, so :func:`scripts.mlops.data.validate` still refuses
    them by name: normalising must never guess.
    """
    from .. import data

    frame = frame.copy()
    cleaned = frame[data.LABEL].astype(str).str.strip().str.lower()
    frame[data.LABEL] = cleaned.map(lambda value: LABEL_SYNONYMS.get(value, value))
    return frame


def load_normalised(path: str | Path) -> "pd.DataFrame":
    """Read a churn CSV, normalise its labels, then validate it like :func:`scripts.mlops.data.load`."""
    import pandas as pd

    from .. import data

    return data.validate(normalise_labels(pd.read_csv(path)), source=str(path))


class LabelSpelling(Incident):
    name = "label_spelling"
    title = "A data batch spells the labels differently ('No'/'Yes')"
    symptom = "train on the batch exits 1: label column 'churn' has unknown label(s) ['No', 'Yes']"
    cause = "an upstream export changed the label spelling; the baseline and the model know 'no'/'yes'"
    fix = "normalise the labels when the batch is loaded (load_normalised: strip, lower-case, known synonyms)"
    verification = "the batch loads and validates with labels ['no', 'yes'], and eval_baseline.json is byte for byte the one it was (doctor --data: labels ✓)"
    anti_fix = (
        "editing eval_baseline.json's labels (or the frozen evaluation set) to the new spelling: every comparison "
        "with the baseline becomes meaningless"
    )
    doctor_check = "labels"

    @staticmethod
    def batch(lab: Lab) -> Path:
        return lab.scratch / "churn_batch.csv"

    @staticmethod
    def baseline(lab: Lab) -> Path:
        return lab.scratch / "eval_baseline.json"

    def break_(self, lab: Lab) -> None:
        from .. import data, evaluate

        frame = data.generate("v2")
        frame[data.LABEL] = frame[data.LABEL].str.capitalize()
        data.write_csv(frame, self.batch(lab))
        if not self.baseline(lab).is_file():
            evaluate.write_json(_baseline_document(lab), self.baseline(lab))
        lab.notes["baseline_sha"] = _sha256(self.baseline(lab))

    def observe(self, lab: Lab) -> Symptom:
        return lab.cli("train", "--data", str(self.batch(lab)), "--eval", str(lab.data_file("eval")))

    def repair(self, lab: Lab) -> None:
        from .. import data

        data.write_csv(load_normalised(self.batch(lab)), self.batch(lab))

    def verify(self, lab: Lab) -> Verdict:
        from .. import data
        from ..errors import DataError

        baseline = json.loads(self.baseline(lab).read_text())
        if _sha256(self.baseline(lab)) != lab.notes.get("baseline_sha") or baseline.get("labels") != list(data.LABELS):
            return Verdict(False, f"the baseline was edited (labels now {baseline.get('labels')}): restore it")
        try:
            frame = data.load(self.batch(lab))
        except DataError as exc:
            return Verdict(False, exc.problem)
        return Verdict(True, f"{self.batch(lab).name} loads with labels {sorted(set(frame[data.LABEL]))}")

    def doctor_options(self, lab: Lab) -> dict[str, Any]:
        return {"workspace": str(lab.folder), "data": self.batch(lab), "baseline": self.baseline(lab)}


def _baseline_document(lab: Lab) -> dict[str, Any]:
    """The reference model's evaluation on the frozen set (the model fitted on v1: no registry needed)."""
    from .. import evaluate

    base, _ = _models(lab)
    return evaluate.evaluate_file(base, lab.data_file("eval"), model=lab.model)


def _models(lab: Lab) -> tuple[Any, Any]:
    """The v1 model, and an equally good retrain (a bootstrap resample of v1): fitted once per lab."""
    if "models" not in lab.notes:
        from .. import data, noise, train

        v1 = data.load(lab.data_file("v1"))
        lab.notes["models"] = (train.fit(v1), train.fit(noise.bootstrap_sample(v1, RETRAIN_SEED)))
    models: tuple[Any, Any] = lab.notes["models"]
    return models


# --- 2. tiny evaluation set ----------------------------------------------------------------------

#: The bootstrap resample whose refit is within the default tolerance of the v1 model on every
#: slice of the frozen evaluation set (checked by the tests): an honest, equally good retrain.
RETRAIN_SEED = 7
TINY_ROWS = 9
TINY_SLICE = "student"


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of an accuracy of ``correct``/``n`` (95 % for z = 1.96)."""
    if n <= 0:
        raise MlopsError("an accuracy needs at least one row", "evaluate on a non-empty set.")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class TinyEvalNoise(Incident):
    name = "tiny_eval_noise"
    title = "Accuracy 'dropped beyond tolerance' on a 9-row evaluation set"
    symptom = "compare-baseline exits 2: the student bucket fell from 0.6667 to 0.5556 (one row of nine)"
    cause = (
        "noise: on 9 rows one prediction moves accuracy by 0.11; the 95 % interval of 6/9 is about 0.35-0.88, "
        "so the candidate is indistinguishable from the baseline"
    )
    fix = "evaluate both on the frozen 2,400-row evaluation set (intervals narrower than the tolerance)"
    verification = "the gate step uses the frozen evaluation set (its fingerprint), the default tolerance and minimum slice size, and exits 0"
    anti_fix = "raising the tolerance until it passes: the gate then waves real regressions through too"

    @staticmethod
    def config(lab: Lab) -> Path:
        return lab.scratch / "gate-step.json"

    def break_(self, lab: Lab) -> None:
        from .. import data
        from ..gate.checks import DEFAULT_TOLERANCE

        tiny = lab.scratch / "churn_eval_tiny.csv"
        data.write_csv(self.tiny_set(lab), tiny)
        # Someone lowered the minimum slice size so that the tiny set "could be compared".
        self._configure(lab, eval_file=tiny, tolerance=DEFAULT_TOLERANCE, min_slice_size=1)

    def tiny_set(self, lab: Lab) -> "pd.DataFrame":
        """Nine student rows of the frozen set on which the retrain gets one more wrong (6/9 -> 5/9):
        drawn once per lab (the models are fitted once per lab too), a copy each time."""
        if "tiny_set" not in lab.notes:
            lab.notes["tiny_set"] = self._draw_tiny_set(lab)
        tiny: pd.DataFrame = lab.notes["tiny_set"]
        return tiny.copy()

    @staticmethod
    def _draw_tiny_set(lab: Lab) -> "pd.DataFrame":
        import numpy as np

        from .. import data

        base, candidate = _models(lab)
        frame = data.load(lab.data_file("eval"))
        rows = frame[frame[data.SEGMENT] == TINY_SLICE].reset_index(drop=True)
        truth = rows[data.LABEL].to_numpy()
        base_right = np.asarray(base.predict(data.features(rows))) == truth
        cand_right = np.asarray(candidate.predict(data.features(rows))) == truth
        for seed in range(10_000):
            chosen = np.random.default_rng(seed).choice(len(rows), size=TINY_ROWS, replace=False)
            if base_right[chosen].sum() == 6 and cand_right[chosen].sum() == 5:
                return rows.iloc[np.sort(chosen)].reset_index(drop=True)
        raise MlopsError("no 9-row draw shows the drop", "the models changed; choose another RETRAIN_SEED.")

    def _configure(self, lab: Lab, **settings: Any) -> None:
        document = {key: str(value) if isinstance(value, Path) else value for key, value in settings.items()}
        self.config(lab).write_text(json.dumps(document, indent=2) + "\n")

    def gate_step(self, lab: Lab) -> Symptom:
        """The CI step as configured: evaluate both models on the configured set, then compare-baseline."""
        from .. import evaluate

        settings = json.loads(self.config(lab).read_text())
        base, candidate = _models(lab)
        eval_file = Path(settings["eval_file"])
        base_json = evaluate.write_json(
            evaluate.evaluate_file(base, eval_file, model=lab.model), lab.scratch / "baseline-eval.json"
        )
        cand_json = evaluate.write_json(evaluate.evaluate_file(candidate, eval_file), lab.scratch / "cand-eval.json")
        command = ["scripts.mlops", "compare-baseline", "--candidate", str(cand_json)]
        command += ["--baseline", str(base_json), "--tolerance", str(settings["tolerance"])]
        command += ["--min-slice-size", str(settings["min_slice_size"])]
        return run_module(command, cwd=lab.root, env=lab.env())

    def observe(self, lab: Lab) -> Symptom:
        return self.gate_step(lab)

    def intervals(self, lab: Lab) -> dict[str, tuple[float, float]]:
        """95 % Wilson intervals of both models' accuracy on the configured evaluation set."""
        import numpy as np

        from .. import data

        settings = json.loads(self.config(lab).read_text())
        frame = data.load(settings["eval_file"])
        truth = frame[data.LABEL].to_numpy()
        out: dict[str, tuple[float, float]] = {}
        for label, model in zip(("baseline", "candidate"), _models(lab), strict=True):
            right = int((np.asarray(model.predict(data.features(frame))) == truth).sum())
            out[label] = wilson_interval(right, len(frame))
        return out

    def anti_repair(self, lab: Lab) -> None:
        """Raise the tolerance until the tiny set passes (0.2: more than one row of nine)."""
        settings = json.loads(self.config(lab).read_text())
        self._configure(lab, **{**settings, "tolerance": 0.2})

    def repair(self, lab: Lab) -> None:
        from ..gate.checks import DEFAULT_MIN_SLICE_SIZE

        settings = json.loads(self.config(lab).read_text())
        self._configure(
            lab, eval_file=lab.data_file("eval"), tolerance=settings["tolerance"], min_slice_size=DEFAULT_MIN_SLICE_SIZE
        )

    def verify(self, lab: Lab) -> Verdict:
        from ..data import FROZEN_EVAL_SHA256
        from ..gate.checks import DEFAULT_MIN_SLICE_SIZE, DEFAULT_TOLERANCE

        settings = json.loads(self.config(lab).read_text())
        if float(settings["tolerance"]) > DEFAULT_TOLERANCE:
            return Verdict(False, f"the tolerance was raised to {settings['tolerance']}: real regressions now pass too")
        if int(settings["min_slice_size"]) < DEFAULT_MIN_SLICE_SIZE:
            return Verdict(False, f"min_slice_size {settings['min_slice_size']}: slices that small cannot be judged")
        if _sha256(Path(settings["eval_file"])) != FROZEN_EVAL_SHA256:
            return Verdict(False, f"{settings['eval_file']} is not the frozen evaluation set")
        step = self.gate_step(lab)
        return Verdict(step.code == 0, f"gate step: exit {step.code}: {step.text.splitlines()[0] if step.text else ''}")


# --- 3. port in use ------------------------------------------------------------------------------


class PortInUse(Incident):
    name = "port_in_use"
    title = "The server will not start: the port is already in use"
    symptom = "serve exits 1: cannot listen on 127.0.0.1:PORT: Address already in use"
    cause = "an old server (a stale 'mlflow server' from an earlier run) still listens on the port"
    fix = "find the process that owns the port (doctor --port PORT) and stop that one process by its pid"
    verification = "the port is free (doctor --port: ✓) and every other server that was running still runs"
    anti_fix = "pkill -f \"mlflow server\": also kills every other matching process (a classmate's server, CI's)"
    doctor_check = "port"

    def break_(self, lab: Lab) -> None:
        (holder, port), (bystander, other) = lab.start_all(
            [[_python(), "-c", _HOLDER, "mlflow", "server", "--stale"],
             [_python(), "-c", _HOLDER, "mlflow", "server", "--someone-else"]]
        )  # fmt: skip
        lab.notes.update(port=int(port), holder=holder.pid, bystander=bystander.pid, other_port=int(other))

    def observe(self, lab: Lab) -> Symptom:
        port = str(lab.notes["port"])
        return lab.cli("serve", "--model", lab.model, "--alias", lab.alias, "--port", port, timeout=60)

    def repair(self, lab: Lab) -> None:
        from .. import procs

        mine = {process.pid for process in lab.processes}  # a drill only ever stops what it started
        for owner in procs.port_owners(lab.notes["port"]):
            if owner.pid in mine:
                procs.stop_pid(owner.pid)
        for process in lab.processes:
            process.poll()  # reap the stopped holder (a zombie still shows in /proc)

    def anti_repair(self, lab: Lab) -> None:
        """What ``pkill -f "mlflow server"`` does, confined to the lab's own processes: stop every match."""
        from .. import procs

        for process in lab.processes:
            if "mlflow server" in procs.cmdline(process.pid):
                procs.stop_pid(process.pid)
                process.poll()

    def verify(self, lab: Lab) -> Verdict:
        from .. import procs

        if not procs.alive(lab.notes["bystander"]) or not procs.port_in_use(lab.notes["other_port"]):
            return Verdict(
                False, f"the bystander (pid {lab.notes['bystander']}) was stopped too: stop by pid, not by name"
            )
        if procs.port_in_use(lab.notes["port"]):
            owners = procs.port_owners(lab.notes["port"])
            held = ", ".join(str(owner) for owner in owners) or "an unknown process"
            return Verdict(False, f"port {lab.notes['port']} is still in use by {held}")
        return Verdict(True, f"port {lab.notes['port']} is free; the other server (pid {lab.notes['bystander']}) runs")

    def doctor_options(self, lab: Lab) -> dict[str, Any]:
        return {"workspace": str(lab.folder), "port": lab.notes["port"]}


# --- 4. store locked -----------------------------------------------------------------------------


class StoreLocked(Incident):
    name = "store_locked"
    title = "The registry database is locked"
    symptom = "promote exits 1: the SQLite registry ... is locked by another process"
    cause = "an interrupted writer (a hung notebook kernel, a killed training run) still holds SQLite's lock"
    fix = "find the process holding mlflow.db open (doctor names its pid) and stop that process"
    verification = (
        "doctor's lock check is ✓, mlflow.db is still there and churn-classifier@production is still registered"
    )
    anti_fix = "rm mlflow.db (or its journal): the lock goes away with every model, version and alias in it"
    doctor_check = "lock"

    def break_(self, lab: Lab) -> None:
        locker, _ = lab.start([_python(), "-c", _LOCKER, str(lab.db)])
        lab.notes["locker"] = locker.pid

    def observe(self, lab: Lab) -> Symptom:
        return lab.cli("promote", "--model", lab.model, "--version", "1", "--alias", "staging", timeout=90)

    def repair(self, lab: Lab) -> None:
        from .. import procs

        for holder in procs.file_holders(lab.db):
            if holder.pid in {process.pid for process in lab.processes}:
                procs.stop_pid(holder.pid)

    def verify(self, lab: Lab) -> Verdict:
        from .. import doctor

        if not lab.db.is_file():
            return Verdict(False, f"{lab.db} is gone: the registry was deleted, not unlocked")
        lock = doctor.check_lock(lab.db)
        if lock.failed:
            return Verdict(False, lock.detail)
        names, targets = doctor.sqlite_registry(lab.db)
        if lab.model not in names or not any(t.model == lab.model and t.alias == lab.alias for t in targets):
            return Verdict(False, f"{lab.model}@{lab.alias} is missing from the registry")
        return Verdict(True, f"no lock held; {lab.model}@{lab.alias} still registered")


# --- 5. no version behind @production; MLFLOW_TRACKING_URI unset -------------------------------------


class NoProductionAlias(Incident):
    name = "no_production_alias"
    title = "No version behind @production"
    symptom = "baseline --alias production exits 1: model 'churn-classifier' has no alias 'production'"
    cause = "the promotion step never ran (or training ran without registering), so the alias was never set"
    fix = "promote the version that passed the gate: promote --model churn-classifier --version N --alias production"
    verification = (
        "models:/churn-classifier@production resolves to the version that passed the gate (doctor: aliases ✓)"
    )
    anti_fix = "pointing the smoke test at 'the latest version' instead: it then ships whatever was trained last"
    doctor_check = "aliases"

    def break_(self, lab: Lab) -> None:
        from .. import registry

        lab.notes["version"] = registry.version_for_alias(lab.model, lab.alias).version
        with registry.translated(f"remove {lab.model}@{lab.alias}"):
            registry.client().delete_registered_model_alias(lab.model, lab.alias)

    def observe(self, lab: Lab) -> Symptom:
        out = lab.scratch / "baseline-check.json"
        return lab.cli("baseline", "--model", lab.model, "--alias", lab.alias, "--data", str(lab.data_file("eval")),
                       "--out", str(out))  # fmt: skip

    def repair(self, lab: Lab) -> None:
        from .. import promotion

        promotion.promote(lab.model, lab.notes["version"], lab.alias, actor="incident-repair",
                          reason="restore the alias the promotion step never set")  # fmt: skip

    def verify(self, lab: Lab) -> Verdict:
        from .. import registry
        from ..errors import RegistryError

        try:
            info = registry.version_for_alias(lab.model, lab.alias)
        except RegistryError as exc:
            return Verdict(False, exc.problem)
        return Verdict(True, f"{lab.model}@{lab.alias} -> version {info.version}")


_SMOKE = (
    "import sys, mlflow; v = mlflow.MlflowClient().get_model_version_by_alias(sys.argv[1], 'production'); "
    "print(f'{sys.argv[1]}@production is version {v.version} in {mlflow.get_tracking_uri()}')"
)


class TrackingUriUnset(Incident):
    name = "tracking_uri_unset"
    title = "The smoke test reads a different store (MLFLOW_TRACKING_URI unset)"
    symptom = "the smoke step exits 1 with MLflow's RESOURCE_DOES_NOT_EXIST: Registered Model ... not found"
    cause = (
        "without MLFLOW_TRACKING_URI, MLflow uses sqlite:///mlflow.db (or ./mlruns) of the step's current folder: "
        "an empty store it has just created"
    )
    fix = "set MLFLOW_TRACKING_URI explicitly in the step's environment to the registry the gate used"
    verification = "the smoke step exits 0 and prints the tracking URI it read, which is the registry the gate used"
    anti_fix = "registering or promoting a model in the stray store by hand so the smoke test passes"
    doctor_check = "store"

    @staticmethod
    def checkout(lab: Lab) -> Path:
        """The folder the CI step runs in (a checkout of the repository, not the lab's folder)."""
        path = lab.scratch / "checkout"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _script(self, lab: Lab, export: bool) -> None:
        line = f'export MLFLOW_TRACKING_URI="{lab.tracking_uri}"\n' if export else ""
        body = f'set -eo pipefail\n{line}"$PY" -c "$SMOKE" "$MODEL"\n'
        _write_script(self.checkout(lab) / "smoke.sh", body)

    def break_(self, lab: Lab) -> None:
        self._script(lab, export=False)

    def smoke(self, lab: Lab) -> Symptom:
        env = lab.env(PY=_python(), SMOKE=_SMOKE, MODEL=lab.model)
        return run(["bash", "smoke.sh"], cwd=self.checkout(lab), env=env, timeout=90)

    def observe(self, lab: Lab) -> Symptom:
        return self.smoke(lab)

    def repair(self, lab: Lab) -> None:
        self._script(lab, export=True)

    def verify(self, lab: Lab) -> Verdict:
        step = self.smoke(lab)
        ok = step.code == 0 and lab.tracking_uri in step.text
        return Verdict(ok, step.text.splitlines()[-1] if step.text else f"exit {step.code}")

    def doctor_options(self, lab: Lab) -> dict[str, Any]:
        return {"cwd": self.checkout(lab)}  # what the step sees: MLflow's default in its own folder

    def cleanup(self, lab: Lab) -> None:
        super().cleanup(lab)
        (self.checkout(lab) / "mlflow.db").unlink(missing_ok=True)  # the stray store MLflow created


# --- 6. serving: stale payload, missing artifacts, sleep instead of a health poll -------------------


class StalePayload(Incident):
    name = "stale_payload_422"
    title = "/predict answers 422 after a schema change"
    symptom = "POST /predict returns 422: records[0].data_usage_gb: required field is missing"
    cause = "the smoke test's payload was written before the model gained a column; the server validates the schema"
    fix = "rebuild the payload from the model's input schema (or its input_example.json) whenever the schema changes"
    verification = "the smoke test's POST /predict answers 200 with predictions"
    anti_fix = "making the server accept anything (dropping validation, filling missing columns with 0)"

    @staticmethod
    def payload(lab: Lab) -> Path:
        return lab.scratch / "smoke-payload.json"

    def _records(self, lab: Lab) -> list[dict[str, Any]]:
        from .. import data

        records: list[dict[str, Any]] = data.features(data.load(lab.data_file("eval")).head(2)).to_dict("records")
        return records

    def break_(self, lab: Lab) -> None:
        """Write the stale payload and start the real server for @production (stopped by cleanup)."""
        from ..server import start_server

        stale = [{k: v for k, v in record.items() if k != "data_usage_gb"} for record in self._records(lab)]
        self.payload(lab).write_text(json.dumps({"records": stale}, indent=2) + "\n")
        env = {"MLFLOW_TRACKING_URI": lab.tracking_uri, "MLFLOW_REGISTRY_URI": lab.tracking_uri}
        lab.notes["server"] = start_server(lab.model, lab.alias, env=env, cwd=lab.root, timeout=90)

    def post(self, lab: Lab) -> Symptom:
        """POST the smoke payload to the running server; the real status and body."""
        body = json.loads(self.payload(lab).read_text())
        response = lab.notes["server"].predict(body["records"])
        return Symptom("http", response.text, response.status_code)

    def cleanup(self, lab: Lab) -> None:
        server = lab.notes.pop("server", None)
        if server is not None:
            server.stop()
        super().cleanup(lab)

    def observe(self, lab: Lab) -> Symptom:
        return self.post(lab)

    def repair(self, lab: Lab) -> None:
        self.payload(lab).write_text(json.dumps({"records": self._records(lab)}, indent=2) + "\n")

    def verify(self, lab: Lab) -> Verdict:
        answer = self.post(lab)
        return Verdict(answer.code == 200, f"HTTP {answer.code}: {answer.text[:200]}")


class MissingArtifacts(Incident):
    name = "missing_artifacts"
    title = "The server never becomes healthy: the model's artifacts are missing"
    symptom = "the server exits 1 before /health answers: could not load models:/churn-classifier/N ... No such file"
    cause = "the version's artifact folder was deleted or moved (a cleaned /tmp, another machine's paths)"
    fix = "restore the artifacts from a backup; or retrain, register a new version and point the alias at it"
    verification = "doctor's artifacts check is ✓ and models:/churn-classifier@production loads"
    anti_fix = "deleting the version (or the alias) so the error goes away: nothing can be served at all"
    doctor_check = "artifacts"

    def break_(self, lab: Lab) -> None:
        from .. import doctor

        _, targets = doctor.sqlite_registry(lab.db)
        found = [t for t in targets if t.model == lab.model and t.alias == lab.alias]
        folder = doctor.artifact_folder(found[0].location) if found else None
        if folder is None or not folder.is_dir():
            raise MlopsError(
                f"no local artifacts behind {lab.model}@{lab.alias} to move", "use a trained lab workspace."
            )
        moved = folder.with_name(folder.name + ".moved-away")
        folder.rename(moved)
        lab.notes.update(artifacts=str(folder), moved=str(moved))

    def observe(self, lab: Lab) -> Symptom:
        from ..server import start_server

        env = {"MLFLOW_TRACKING_URI": lab.tracking_uri, "MLFLOW_REGISTRY_URI": lab.tracking_uri}
        try:
            server = start_server(lab.model, lab.alias, env=env, cwd=lab.root, timeout=60)
        except MlopsError as exc:
            return Symptom("exception", str(exc))
        try:
            return Symptom("http", json.dumps(server.health()), 200)
        finally:
            server.stop()

    def repair(self, lab: Lab) -> None:
        moved, folder = Path(lab.notes["moved"]), Path(lab.notes["artifacts"])
        if moved.is_dir() and not folder.exists():
            moved.rename(folder)

    def verify(self, lab: Lab) -> Verdict:
        from .. import doctor, registry
        from ..errors import RegistryError

        _, targets = doctor.sqlite_registry(lab.db)
        problems = [f for f in doctor.check_artifacts(targets, lab.model) if f.failed]
        if problems:
            return Verdict(False, problems[0].detail)
        try:
            registry.load_model(registry.model_uri(lab.model, alias=lab.alias))
        except RegistryError as exc:
            return Verdict(False, exc.problem)
        return Verdict(True, f"{lab.model}@{lab.alias} loads")


class SleepInsteadOfPoll(Incident):
    name = "sleep_not_poll"
    title = "The CI step fails because it sleeps instead of polling /health"
    symptom = (
        "the smoke step exits 1: httpx.ConnectError: [Errno 111] Connection refused (the server was still loading)"
    )
    cause = "`sleep 1` guesses the start-up time; loading the model takes longer, more so on a busy runner"
    fix = "poll /health until it answers, with a deadline, and fail early with the server's log if it exits"
    verification = "the CI step exits 0: it waited until /health answered, within its deadline"
    anti_fix = "a longer sleep (slow every run, still flaky) or an endless retry loop (hangs until the job times out)"

    @staticmethod
    def script(lab: Lab) -> Path:
        return lab.scratch / "ci-serve.sh"

    def _write(self, lab: Lab, poll: bool) -> None:
        start = (
            "set -eo pipefail\n"
            '"$PY" -m scripts.mlops --workspace "$WS" serve --model "$MODEL" --alias production --port "$PORT" '
            '> "$LOG" 2>&1 &\n'
            "server=$!\n"
            'trap \'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true\' EXIT\n'
        )
        url = '"http://127.0.0.1:$PORT/health"'
        if poll:
            wait = (
                "deadline=$((SECONDS + 60))\n"
                f'until "$PY" -c "$HEALTH" {url} > /dev/null 2>&1; do\n'
                '  if ! kill -0 "$server" 2>/dev/null; then echo "the server exited:"; cat "$LOG"; exit 1; fi\n'
                '  if [ "$SECONDS" -ge "$deadline" ]; then echo "not healthy within 60 s:"; cat "$LOG"; exit 1; fi\n'
                "  sleep 0.2\n"
                "done\n"
            )
        else:
            wait = "sleep 1\n"
        _write_script(self.script(lab), start + wait + f'"$PY" -c "$HEALTH" {url}\n')

    def break_(self, lab: Lab) -> None:
        self._write(lab, poll=False)

    def step(self, lab: Lab) -> Symptom:
        env = lab.env(PY=_python(), WS=lab.workspace.name, MODEL=lab.model, PORT=str(free_port()),
                      LOG=str(lab.scratch / "serve.log"), HEALTH=_HEALTH)  # fmt: skip
        return run(["bash", str(self.script(lab))], cwd=lab.root, env=env, timeout=120)

    def observe(self, lab: Lab) -> Symptom:
        return self.step(lab)

    def repair(self, lab: Lab) -> None:
        self._write(lab, poll=True)

    def verify(self, lab: Lab) -> Verdict:
        step = self.step(lab)
        return Verdict(step.code == 0, f"exit {step.code}: {step.text.splitlines()[-1] if step.text else ''}")


# --- 7. fail-open gate ---------------------------------------------------------------------------


class FailOpenGate(Incident):
    name = "fail_open_gate"
    title = "A fail-open gate lets a regressed candidate through"
    symptom = "the gate prints FAIL, yet the step exits 0 (`|| echo ...`, or try/except that exits 0)"
    cause = "the step swallows the comparison's exit status 2, so the job goes green"
    fix = "let the status through: no `|| echo`, no except that exits 0 (exit with the command's own status)"
    verification = "on a regressed candidate both versions of the step exit 2 (the job goes red)"
    anti_fix = "marking the step continue-on-error, or catching the failure to 'keep the pipeline green'"

    def break_(self, lab: Lab) -> None:
        from .. import evaluate

        baseline, candidate = self._evaluations(lab)
        evaluate.write_json(baseline, lab.scratch / "gate-baseline.json")
        evaluate.write_json(candidate, lab.scratch / "gate-cand.json")
        self._write(lab, fail_open=True)

    @staticmethod
    def _evaluations(lab: Lab) -> tuple[dict[str, Any], dict[str, Any]]:
        """The v1 model's and a regressed retrain's evaluations on the frozen set (30 % of the
        'yes' labels flipped): computed once per lab, written again at every break."""
        if "fail_open_evaluations" not in lab.notes:
            from .. import data, evaluate, train
            from ..inject import noisy_labels

            base, _ = _models(lab)
            regressed = train.fit(noisy_labels(data.load(lab.data_file("v1")), 0.3, seed=0, flip_from="yes"))
            lab.notes["fail_open_evaluations"] = (
                evaluate.evaluate_file(base, lab.data_file("eval")),
                evaluate.evaluate_file(regressed, lab.data_file("eval")),
            )
        evaluations: tuple[dict[str, Any], dict[str, Any]] = lab.notes["fail_open_evaluations"]
        return evaluations

    def _write(self, lab: Lab, fail_open: bool) -> None:
        compare = '"$PY" -m scripts.mlops compare-baseline --candidate gate-cand.json --baseline gate-baseline.json'
        shell = f"set -eo pipefail\n{compare}" + (
            ' || echo "::warning::gate failed; continuing"\n' if fail_open else "\n"
        )
        _write_script(lab.scratch / "gate-step.sh", shell)
        args = '["compare-baseline", "--candidate", "gate-cand.json", "--baseline", "gate-baseline.json"]'
        call = f"subprocess.run([sys.executable, '-m', 'scripts.mlops', *{args}]"
        if fail_open:
            python = (
                "import subprocess, sys\n"
                "try:\n"
                f"    {call}, check=True)\n"
                "except Exception:\n"
                "    print('warning: the gate failed; continuing')\n"
                "    sys.exit(0)\n"
            )
        else:
            python = f"import subprocess, sys\nsys.exit({call}).returncode)\n"
        _write_script(lab.scratch / "gate_step.py", python)

    def steps(self, lab: Lab) -> tuple[Symptom, Symptom]:
        """Both versions of the step, each in its own fresh processes, side by side: they only read
        the same two evaluation files, as two jobs of one workflow would."""
        from concurrent.futures import ThreadPoolExecutor

        env = lab.env(PY=_python())
        with ThreadPoolExecutor(max_workers=2) as pool:
            shell = pool.submit(run, ["bash", "gate-step.sh"], cwd=lab.scratch, env=env)
            python = pool.submit(run, [_python(), "gate_step.py"], cwd=lab.scratch, env=env)
            return shell.result(), python.result()

    def observe(self, lab: Lab) -> Symptom:
        shell, python = self.steps(lab)
        text = (
            f"$ bash gate-step.sh  -> exit {shell.code}\n{shell.text}\n\n$ python gate_step.py  -> exit {python.code}\n"
        )
        return Symptom("exit", text + python.text, shell.code)

    def repair(self, lab: Lab) -> None:
        self._write(lab, fail_open=False)

    def verify(self, lab: Lab) -> Verdict:
        from ..errors import EXIT_REFUSED

        shell, python = self.steps(lab)
        ok = shell.code == EXIT_REFUSED and python.code == EXIT_REFUSED
        return Verdict(ok, f"on a regressed candidate: shell step exit {shell.code}, python step exit {python.code}")


# --- 8. git: a push rejected because the remote moved on ----------------------------------------------

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "lab",
    "GIT_AUTHOR_EMAIL": "lab@example.invalid",
    "GIT_COMMITTER_NAME": "lab",
    "GIT_COMMITTER_EMAIL": "lab@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",  # the learner's own git settings play no part
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


class _GitIncident(Incident):
    """Shared by the git incidents: a local bare remote and clones of it, under the lab's scratch folder."""

    @staticmethod
    def folder(lab: Lab) -> Path:
        return lab.scratch / "git"

    def git(self, lab: Lab, where: str, *args: str) -> Symptom:
        """Run git in one of the incident's repositories (``remote.git``, ``ci``, ``dev``)."""
        return run(["git", *args], cwd=self.folder(lab) / where, env=lab.env(**_GIT_IDENTITY), timeout=60)

    def _ok(self, lab: Lab, where: str, *args: str) -> str:
        done = self.git(lab, where, *args)
        if done.code != 0:
            raise MlopsError(f"git {' '.join(args)} failed in {where}: {done.text}")
        return done.text

    def _remote_and_clones(self, lab: Lab, *clones: str) -> Path:
        """A fresh bare remote with one commit on main, and the named clones of it."""
        root = self.folder(lab)
        if root.exists():
            shutil.rmtree(root)
        (root / "remote.git").mkdir(parents=True)
        self._ok(lab, "remote.git", "init", "--bare", "-q", "-b", "main")
        for clone in clones:
            run(["git", "clone", "-q", "remote.git", clone], cwd=root, env=lab.env(**_GIT_IDENTITY), timeout=60)
        first = clones[0]
        (root / first / "README.md").write_text("churn model\n")
        self._ok(lab, first, "add", "README.md")
        self._ok(lab, first, "commit", "-q", "-m", "start")
        self._ok(lab, first, "push", "-q", "origin", "main")
        for clone in clones[1:]:
            self._ok(lab, clone, "pull", "-q", "origin", "main")
        return root


class GitPushRejected(_GitIncident):
    name = "git_push_rejected"
    title = "The metadata push is rejected: the remote branch moved on during training"
    symptom = "git push exits 1: ! [rejected] HEAD -> main (fetch first); Updates were rejected because the remote ..."
    cause = "the job checked out main, trained for minutes, and someone pushed to main in between"
    fix = "fetch and rebase onto the remote branch, then push (and let a failed push fail the job)"
    verification = "the remote's main holds both the other person's commit and the metadata commit"
    anti_fix = "git push --force (deletes the other person's commit) or `git push || echo` (the metadata is lost)"

    def break_(self, lab: Lab) -> None:
        root = self._remote_and_clones(lab, "dev", "ci")  # the CI job checks out main ...
        (root / "dev" / "README.md").write_text("churn model\nfixed a typo while CI was training\n")
        self._ok(lab, "dev", "commit", "-q", "-am", "docs: typo")  # ... someone pushes meanwhile ...
        self._ok(lab, "dev", "push", "-q", "origin", "main")
        lab.notes["dev_commit"] = self._ok(lab, "dev", "rev-parse", "HEAD").strip()
        (root / "ci" / "model-metadata.json").write_text(json.dumps({"version": 2}) + "\n")
        self._ok(lab, "ci", "add", "model-metadata.json")  # ... and the job commits its metadata on the old main
        self._ok(lab, "ci", "commit", "-q", "-m", "chore: update model metadata")

    def observe(self, lab: Lab) -> Symptom:
        return self.git(lab, "ci", "push", "origin", "HEAD:main")

    def repair(self, lab: Lab) -> None:
        self._ok(lab, "ci", "fetch", "-q", "origin")
        self._ok(lab, "ci", "rebase", "-q", "origin/main")
        self._ok(lab, "ci", "push", "-q", "origin", "HEAD:main")

    def verify(self, lab: Lab) -> Verdict:
        log = self.git(lab, "remote.git", "log", "--format=%H %s", "main").text
        if lab.notes["dev_commit"] not in log:
            return Verdict(False, "the other person's commit is gone from the remote (force-pushed over)")
        if "chore: update model metadata" not in log:
            return Verdict(False, "the metadata commit never reached the remote")
        return Verdict(True, "the remote has both commits: " + " / ".join(line[41:] for line in log.splitlines()))


class GitRetagDidNotMove(_GitIncident):
    name = "git_retag"
    title = "The release tag exists but does not include the change"
    symptom = "git tag -a v0.4.0 exits 128: fatal: tag 'v0.4.0' already exists"
    cause = "v0.4.0 was tagged and pushed before the feature branch was merged; a tag never moves by itself"
    fix = "leave the published tag alone and release the merge as the next version (v0.4.1), then push that tag"
    verification = (
        "the published v0.4.0 still names its original commit, and a newer tag on the remote contains the change"
    )
    anti_fix = (
        "git tag -f + git push --force (or deleting and re-pushing the tag): everyone who fetched v0.4.0 keeps the "
        "old commit under the same name, and the release record no longer says what shipped"
    )

    def break_(self, lab: Lab) -> None:
        root = self._remote_and_clones(lab, "dev")
        self._ok(lab, "dev", "tag", "-a", "v0.4.0", "-m", "Model registry and deployment")
        self._ok(lab, "dev", "push", "-q", "origin", "v0.4.0")
        lab.notes["tagged"] = self._ok(lab, "dev", "rev-parse", "v0.4.0^{commit}").strip()
        (root / "dev" / "registry.txt").write_text("aliases instead of stages\n")
        self._ok(lab, "dev", "add", "registry.txt")
        self._ok(lab, "dev", "commit", "-q", "-m", "feat: step 5, the model registry")  # merged after tagging
        self._ok(lab, "dev", "push", "-q", "origin", "main")
        lab.notes["change"] = self._ok(lab, "dev", "rev-parse", "HEAD").strip()

    def observe(self, lab: Lab) -> Symptom:
        return self.git(lab, "dev", "tag", "-a", "v0.4.0", "-m", "Model registry and deployment (step 5)")

    def repair(self, lab: Lab) -> None:
        self._ok(lab, "dev", "tag", "-a", "v0.4.1", "-m", "Model registry and deployment (step 5)", "main")
        self._ok(lab, "dev", "push", "-q", "origin", "v0.4.1")

    def verify(self, lab: Lab) -> Verdict:
        published = self.git(lab, "remote.git", "rev-parse", "v0.4.0^{commit}").text.strip()
        if published != lab.notes["tagged"]:
            return Verdict(False, "the published tag v0.4.0 was moved: whoever fetched it has a different v0.4.0")
        tags = self.git(lab, "remote.git", "tag", "--contains", lab.notes["change"]).text.split()
        if not tags:
            return Verdict(False, "no tag on the remote contains the change: the release does not include it")
        return Verdict(True, f"v0.4.0 unchanged; the change is released in {', '.join(tags)}")


# --- 9. the tracking server's host check -------------------------------------------------------------

#: The name clients use for the tracking server (a DNS name or a reverse proxy in front of it).
SERVER_NAME = "mlflow.lab.internal"
_SEARCH = "/api/2.0/mlflow/registered-models/search"


class InvalidHostHeader(Incident):
    name = "invalid_host_header"
    title = "The tracking server answers 403 'Invalid Host header' to clients that use its name"
    symptom = "HTTP 403: Invalid Host header - possible DNS rebinding attack detected"
    cause = (
        "mlflow server (uvicorn since MLflow 3; the seed's gunicorn timeout flags are outdated) only accepts the Host "
        "headers of localhost and private IPs unless --allowed-hosts names the others; /health is exempt, so "
        "the health check passes while every API call is refused"
    )
    fix = (
        f"restart the server (stop the old one by its pid) with --allowed-hosts '{SERVER_NAME}:*,127.0.0.1:*': the "
        "Host header includes the port, and only patterns with '*' match more than one exact value"
    )
    verification = (
        "a request with the server's name in its Host header gets 200, and one with a foreign Host still gets 403"
    )
    anti_fix = "--disable-security-middleware: every Host and every origin is accepted, DNS rebinding included"

    def _start(self, lab: Lab, port: int, *flags: str) -> None:
        """``mlflow server`` on ``port``; 0: on a port it binds itself, read from its log."""
        from ..contention import SERVER_ENV, listening_port, start_mlflow_server

        args = ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri", lab.tracking_uri]
        log = lab.scratch / "mlflow-server.log"
        process = start_mlflow_server([*args, *flags], env=lab.env(**SERVER_ENV), log=log, cwd=lab.root)
        lab.processes.append(process)
        if port == 0:
            port = listening_port(process, log)
        lab.notes.update(server=process, port=port)
        _wait_healthy(lab, process, port)

    def request(self, lab: Lab, host: str) -> Symptom:
        """One registry request to the server, as a client that calls it ``host``."""
        from ..server import loopback_client  # the process's one client for local servers

        port = lab.notes["port"]
        url = f"http://127.0.0.1:{port}{_SEARCH}"
        response = loopback_client().get(url, headers={"Host": f"{host}:{port}"}, timeout=10)
        return Symptom("http", response.text, response.status_code)

    def break_(self, lab: Lab) -> None:
        self._start(lab, 0)

    def observe(self, lab: Lab) -> Symptom:
        return self.request(lab, SERVER_NAME)

    def repair(self, lab: Lab) -> None:
        old = lab.notes["server"]
        stop_session(old)
        lab.processes.remove(old)
        self._start(lab, lab.notes["port"], "--allowed-hosts", f"{SERVER_NAME}:*,127.0.0.1:*,localhost:*")

    def verify(self, lab: Lab) -> Verdict:
        named, stranger = self.request(lab, SERVER_NAME), self.request(lab, "attacker.example")
        if stranger.code != 403:
            return Verdict(False, f"a foreign Host header got HTTP {stranger.code}: the host check is off")
        return Verdict(named.code == 200, f"as {SERVER_NAME}: HTTP {named.code}; as attacker.example: HTTP 403")


def _wait_healthy(lab: Lab, process: Any, port: int, timeout: float = 180.0) -> None:
    """Poll the tracking server's /health with a deadline; its log if it exits or never answers."""
    from ..contention import wait_healthy

    wait_healthy(f"http://127.0.0.1:{port}", process, lab.scratch / "mlflow-server.log", timeout)


# --- 10. two runs of the deploy gate racing for one emulation folder ------------------------------

#: The semver the race's candidate is released as (into the drill's own copy of the registry).
RACE_SEMVER = "v0.0.1"


class _Trigger(io.StringIO):
    """A run's log that sets ``event`` when a line containing ``mark`` is printed (the start of a step)."""

    def __init__(self, mark: str, event: "threading.Event") -> None:
        super().__init__()
        self.mark, self.event = mark, event

    def write(self, text: str) -> int:
        if self.mark in text:
            self.event.set()
        return super().write(text)


@dataclass
class RaceRun:
    """One run of the race: the runner's result, or the error that stopped it, and its log."""

    name: str
    run: "WorkflowRun | None"
    error: str | None
    log: str

    @property
    def line(self) -> str:
        if self.error is not None:
            return f"{self.name} -> {self.error}"
        assert self.run is not None
        return f"{self.name} -> {self.run.conclusion}"


class PipelinesRacing(Incident):
    name = "pipelines_racing"
    title = "Two runs of the deploy gate share one folder, and the second empties it under the first"
    symptom = (
        "the first run stops with FolderTaken: another run emptied the emulation folder while this run was using it; "
        "the second, started while the first was checking its evaluation set, runs to the end"
    )
    cause = (
        "the workflow's `concurrency:` group was removed, so nothing makes the second run wait: it empties the folder "
        "the first is using (RUNNER_TEMP, the step files), and two gates would promote side by side"
    )
    fix = (
        "restore the workflow's `concurrency:` group (one per model, cancel-in-progress: false): the offline runner, "
        "like GitHub, queues the second run until the first has finished"
    )
    verification = (
        "the workflow names a concurrency group, and two overlapping runs both succeed, the second printed as queued; "
        "the second's steps start after the first's end; the release is in the index once and the alias points at it"
    )
    anti_fix = (
        "a separate --out folder per run (no crash, but two gates still promote side by side, so whichever finishes "
        "last owns @production, whatever order the labels were given in), or a sleep between the runs that only "
        "shifts the race"
    )

    @staticmethod
    def folder(lab: Lab) -> Path:
        path = lab.scratch / "race"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _write_workflow(self, lab: Lab, *, with_concurrency: bool) -> Path:
        """The repository's workflow, as it is or with its top-level ``concurrency:`` block taken out."""
        from ..deploy import WORKFLOW, top_level_keys, workflow_without

        text = WORKFLOW.read_text()
        if "concurrency" not in top_level_keys(text):
            raise MlopsError(
                f"{WORKFLOW} has no top-level `concurrency:` block, so this drill has nothing to remove",
                "restore the block (book/04-ci-deploy-gate.md shows it) before running the drill.",
            )
        if not with_concurrency:
            text = workflow_without(text, "concurrency")
        return _write_script(self.folder(lab) / "deploy-gate.yml", text)

    def break_(self, lab: Lab) -> None:
        """A copy of the lab's registry, a release folder, a baseline and a candidate; the gate without its group."""
        import sqlite3
        from contextlib import closing

        from .. import ci_local, evaluate, registry

        ci_local.warm_up()  # the runs' steps fork from a warm interpreter; start it while the rest is set up
        folder = self.folder(lab)
        for name in ("ci-run", "releases", "locks"):
            shutil.rmtree(folder / name, ignore_errors=True)
        copy = folder / "mlflow.db"
        copy.unlink(missing_ok=True)
        with closing(sqlite3.connect(lab.db)) as source, closing(sqlite3.connect(copy)) as target:
            source.backup(target)  # promotions go to this copy; the artifacts are shared read-only
        version = registry.current_version(lab.model, lab.alias)
        if version is None:
            raise MlopsError(f"{lab.model} has no @{lab.alias} in {lab.db}", "promote a version first (Lab 02).")
        baseline = folder / f"baseline-v{version}.json"
        if not baseline.is_file():  # the candidate's own evaluation: the gate passes, and only the race can fail it
            model = registry.load_model(registry.model_uri(lab.model, version))
            evaluate.write_json(evaluate.evaluate_file(model, lab.data_file("eval"), model=lab.model), baseline)
        candidate = folder / "candidate.json"
        candidate.write_text(json.dumps({"model": lab.model, "version": version, "semver": RACE_SEMVER}) + "\n")
        lab.notes["race_version"] = version
        lab.notes["race_baseline"] = baseline
        self._write_workflow(lab, with_concurrency=False)

    def race(self, lab: Lab) -> tuple[RaceRun, RaceRun]:
        """Run the gate twice on one emulation folder; run-2 starts when run-1 starts its second step.

        The start point is an event, not a delay: run-1 has written the frozen evaluation set into
        its RUNNER_TEMP and is about to read it back when run-2 starts (and, without a group,
        empties the folder).
        """
        import threading

        from ..ci_local import run_workflow
        from ..deploy import REPO

        folder = self.folder(lab)
        start_second = threading.Event()
        results: dict[str, RaceRun] = {}

        def one(name: str, stream: io.StringIO) -> None:
            run, error = None, None
            try:
                run = run_workflow(
                    folder / "deploy-gate.yml",
                    repo=REPO,
                    out=folder / "ci-run",
                    locks=folder / "locks",
                    variables={
                        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
                        "MLOPS_RELEASES_DIR": str(folder / "releases"),
                    },
                    env={
                        "CANDIDATE_FILE": str(folder / "candidate.json"),
                        "BASELINE_FILE": str(lab.notes["race_baseline"]),
                    },
                    stream=stream,
                )
            except MlopsError as exc:
                error = f"{type(exc).__name__}: {exc.problem}"
            except Exception as exc:  # noqa: BLE001 - reported as the run's outcome; the drill goes on
                error = f"{type(exc).__name__}: {exc}"
            finally:
                start_second.set()  # never leave run-2 waiting for a mark run-1 will not print
                results[name] = RaceRun(name, run, error, stream.getvalue())

        first = threading.Thread(
            target=one, args=("run-1", _Trigger("$ python -m scripts.mlops ci verify-eval-hash", start_second))
        )
        second = threading.Thread(target=one, args=("run-2", io.StringIO()))
        first.start()
        start_second.wait(COMMAND_TIMEOUT)
        second.start()
        first.join(COMMAND_TIMEOUT)
        second.join(COMMAND_TIMEOUT)
        if first.is_alive() or second.is_alive():
            raise MlopsError(f"the race's runs did not finish within {COMMAND_TIMEOUT:g} s", "see their logs.")
        return results["run-1"], results["run-2"]

    def observe(self, lab: Lab) -> Symptom:
        first, second = self.race(lab)
        steps = [line for line in first.log.splitlines() if line.startswith(("  - ", "    FAILED", "    ok"))]
        lines = [first.line, second.line, "", "run-1's last steps:", *steps[-3:]]
        return Symptom("exception", "\n".join(lines))

    def repair(self, lab: Lab) -> None:
        self._write_workflow(lab, with_concurrency=True)

    def verify(self, lab: Lab) -> Verdict:
        import mlflow

        from .. import ci_local, release

        document = ci_local.load_workflow(self.folder(lab) / "deploy-gate.yml")
        group = ci_local.concurrency_of(document.get("concurrency"), {"github": {}, "vars": {}})
        if group is None:  # checked first: the race itself takes two full runs
            return Verdict(False, "the workflow has no top-level `concurrency:` group, so nothing queues a second run")
        first, second = self.race(lab)
        for result in (first, second):
            if result.run is None or result.run.conclusion != "success":
                return Verdict(False, f"{first.line}; {second.line}: both runs must succeed")
        assert first.run is not None and second.run is not None
        waited = second.run.queued.get(group[0])
        if not waited:
            return Verdict(False, f"run-2 did not queue for the group {group[0]!r}: nothing serialised the runs")
        first_end = max(s.started_at + s.seconds for job in first.run.jobs.values() for s in job.steps if s.started_at)
        second_start = min(s.started_at for job in second.run.jobs.values() for s in job.steps if s.started_at)
        if second_start < first_end:
            return Verdict(
                False, f"run-2's first step started {first_end - second_start:.1f} s before run-1's last ended"
            )
        folder = self.folder(lab)
        lines = [line for line in release.index_lines(folder / "releases") if line["semver"] == RACE_SEMVER]
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        alias = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(lab.model, lab.alias)
        if len(lines) != 1 or int(alias.version) != lab.notes["race_version"]:
            return Verdict(False, f"{len(lines)} index lines for {RACE_SEMVER}, @{lab.alias} -> {alias.version}")
        return Verdict(True, f"both runs succeeded; run-2 queued {waited:.1f} s and started after run-1 ended; "
                             f"{RACE_SEMVER} released once, @{lab.alias} -> version {alias.version}")  # fmt: skip


CATALOGUE: tuple[Incident, ...] = (
    LabelSpelling(),
    TinyEvalNoise(),
    PortInUse(),
    StoreLocked(),
    NoProductionAlias(),
    TrackingUriUnset(),
    StalePayload(),
    MissingArtifacts(),
    SleepInsteadOfPoll(),
    FailOpenGate(),
    GitPushRejected(),
    GitRetagDidNotMove(),
    InvalidHostHeader(),
    PipelinesRacing(),
)


def by_name(name: str) -> Incident:
    """The catalogue entry called ``name``."""
    for incident in CATALOGUE:
        if incident.name == name:
            return incident
    raise MlopsError(f"no incident named {name!r}", f"choose one of {[i.name for i in CATALOGUE]}.")
