"""Every incident: break -> the real symptom -> verify fails -> fix -> verify passes; doctor sees what it can.

Servers and helper processes bind 127.0.0.1 on free ports and are stopped by each incident's
cleanup (checked at the end of every cycle).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import pandas as pd
import pytest

from scripts.mlops import cli, data, doctor, procs
from scripts.mlops.errors import MlopsError
from scripts.mlops.incidents import CATALOGUE, Lab, attempt, broken, by_name, normalise_labels, wilson_interval
from scripts.mlops.incidents.catalogue import GitPushRejected, GitRetagDidNotMove, LabelSpelling, TinyEvalNoise
from tests.support import TrainedFactory, TrainedWorkspace

#: Incidents that change the registry or the artifacts get a workspace of their own.
OWN_WORKSPACE = ("no_production_alias", "missing_artifacts")

#: The real symptom each incident must show: kind, code and text it must contain.
EXPECTED: dict[str, tuple[str, int | None, tuple[str, ...]]] = {
    "label_spelling": ("exit", 1, ("label column 'churn' has unknown label(s) ['No', 'Yes']", "fix: normalise")),
    "tiny_eval_noise": ("exit", 2, ("FAIL: 1 of 1 buckets failed", "0.6667 -> 0.5556")),
    "port_in_use": ("exit", 1, ("cannot listen on 127.0.0.1:", "Address already in use")),
    "store_locked": ("exit", 1, ("is locked by another process",)),
    "no_production_alias": ("exit", 1, ("model 'churn-classifier' has no alias 'production'; aliases set: none",)),
    "tracking_uri_unset": ("exit", 1, ("MlflowException: Registered Model with name=churn-classifier not found",)),
    "stale_payload_422": ("http", 422, ("records[0].data_usage_gb: required field is missing",)),
    "missing_artifacts": ("exception", None, ("exited with status 1 before it became healthy",
                                              "could not load models:/churn-classifier/1")),
    "sleep_not_poll": ("exit", 1, ("httpx.ConnectError: [Errno 111] Connection refused",)),
    "fail_open_gate": ("exit", 0, ("FAIL: 3 of 4 buckets failed", "::warning::gate failed; continuing",
                                   "python gate_step.py  -> exit 0")),
    "git_push_rejected": ("exit", 1, ("! [rejected]        HEAD -> main (fetch first)",
                                      "Updates were rejected because the remote contains work that you do")),
    "git_retag": ("exit", 128, ("fatal: tag 'v0.4.0' already exists",)),
    "invalid_host_header": ("http", 403, ("Invalid Host header - possible DNS rebinding attack detected",)),
    "pipelines_racing": ("exception", None, ("run-1 -> FolderTaken: another run emptied the emulation folder",
                                             "run-2 -> success")),
}


@pytest.fixture(scope="module")
def shared(trained_workspace: TrainedFactory) -> TrainedWorkspace:
    from scripts.mlops import ci_local

    ci_local.warm_up()  # pipelines_racing's runs fork from it: warm it while the other incidents run
    return trained_workspace("incidents", aliases={"production": 1})


LabFactory = Callable[[str], Lab]


@pytest.fixture
def lab_for(shared: TrainedWorkspace, trained_workspace: TrainedFactory, monkeypatch: pytest.MonkeyPatch) -> LabFactory:
    """``lab_for(incident_name)``: the lab (workspace entered) that incident runs in."""

    def make(name: str) -> Lab:
        trained = trained_workspace(f"incident-{name}", aliases={"production": 1}) if name in OWN_WORKSPACE else shared
        trained.enter(monkeypatch)
        return Lab.current()

    return make


def _session(leader: int) -> list[str]:
    """The command lines of the live processes in the session ``leader`` started."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == leader and procs.alive(int(entry.name)):
                    found.append(procs.cmdline(int(entry.name)))
            except ProcessLookupError:
                continue  # it ended while we looked
    return found


def _flagged(report: doctor.Report) -> set[str]:
    return {f.check for f in report.findings if f.status in ("fail", "warn")}


def test_the_catalogue_covers_the_issue_and_every_entry_is_documented() -> None:
    assert [i.name for i in CATALOGUE] == list(EXPECTED)
    for incident in CATALOGUE:
        for text in (incident.title, incident.symptom, incident.cause, incident.fix, incident.anti_fix):
            assert text and text.strip() == text, incident.name
        assert incident.doctor_check in (None, "labels", "port", "lock", "aliases", "store", "artifacts")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_break_shows_the_real_symptom_and_only_the_fix_passes_verify(name: str, lab_for: LabFactory) -> None:
    incident = by_name(name)
    lab = lab_for(name)
    with broken(incident, lab):
        symptom = incident.observe(lab)
        before = incident.verify(lab)
        seen = doctor.diagnose(doctor.Options(**incident.doctor_options(lab))) if incident.doctor_check else None
        incident.repair(lab)
        after = incident.verify(lab)
        healed = (doctor.diagnose(doctor.Options(**incident.doctor_options(lab)))
                  if incident.doctor_check and name != "tracking_uri_unset" else None)
        served = (doctor.diagnose(doctor.Options(tracking_uri=f"http://127.0.0.1:{lab.notes['port']}"))
                  if name == "invalid_host_header" else None)  # doctor through a live tracking server
    kind, code, texts = EXPECTED[name]
    assert (symptom.kind, symptom.code) == (kind, code), str(symptom)
    if served is not None:
        assert served.healthy and {f.check for f in served.findings if f.status == "ok"} >= {
            "reachable", "models", "aliases", "artifacts"}, doctor.render(served)
    for text in texts:
        assert text in symptom.text, f"{text!r} not in\n{symptom.text}"
    assert not before, before.detail
    assert after, after.detail
    if seen is not None:
        assert incident.doctor_check in _flagged(seen) and not seen.healthy, doctor.render(seen)
    if healed is not None:
        assert healed.healthy, doctor.render(healed)
    # Every process the incident started is stopped and reaped.
    assert lab.processes == []
    for key in ("holder", "bystander", "locker"):
        if key in lab.notes:
            assert not procs.alive(lab.notes[key]), key
    if name == "invalid_host_header":  # the tracking server and the uvicorn process it started
        server = lab.notes["server"].pid
        assert not procs.alive(server) and _session(server) == [], _session(server)


def test_stopping_every_mlflow_server_by_name_fails_verify(lab_for: LabFactory) -> None:
    """What `pkill -f "mlflow server"` does, done by pid here: the bystander dies too, and verify says so."""
    incident, lab = by_name("port_in_use"), lab_for("port_in_use")
    with broken(incident, lab):
        for process in lab.processes:
            procs.stop_pid(process.pid)
            process.poll()
        verdict = incident.verify(lab)
    assert not verdict and "bystander" in verdict.detail


def test_raising_the_tolerance_does_not_pass_verify(lab_for: LabFactory) -> None:
    incident, lab = TinyEvalNoise(), lab_for("tiny_eval_noise")
    with broken(incident, lab):
        config = json.loads(incident.config(lab).read_text())
        config["tolerance"] = 0.2
        incident.config(lab).write_text(json.dumps(config))
        verdict = incident.verify(lab)
        intervals = incident.intervals(lab)
    assert not verdict and "tolerance was raised" in verdict.detail
    low, high = intervals["baseline"]
    assert low < 5 / 9 < high  # the candidate's 0.5556 is inside the baseline's 95 % interval


def test_editing_the_baseline_labels_does_not_pass_verify(lab_for: LabFactory) -> None:
    incident, lab = LabelSpelling(), lab_for("label_spelling")
    with broken(incident, lab):
        path = incident.baseline(lab)
        document = json.loads(path.read_text())
        path.write_text(json.dumps({**document, "labels": ["No", "Yes"]}))
        verdict = incident.verify(lab)
        path.write_text(json.dumps(document))
    assert not verdict and "baseline was edited" in verdict.detail


def test_force_pushing_does_not_pass_verify(lab_for: LabFactory) -> None:
    incident, lab = GitPushRejected(), lab_for("git_push_rejected")
    with broken(incident, lab):
        forced = incident.git(lab, "ci", "push", "--force", "origin", "HEAD:main")
        verdict = incident.verify(lab)
    assert forced.code == 0 and not verdict and "force-pushed" in verdict.detail


def test_moving_a_published_tag_does_not_pass_verify(lab_for: LabFactory) -> None:
    incident, lab = GitRetagDidNotMove(), lab_for("git_retag")
    with broken(incident, lab):
        incident.git(lab, "dev", "tag", "-f", "-a", "v0.4.0", "-m", "moved", "main")
        forced = incident.git(lab, "dev", "push", "--force", "origin", "v0.4.0")
        verdict = incident.verify(lab)
    assert forced.code == 0 and not verdict and "was moved" in verdict.detail


def test_the_cli_lists_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["incidents"]) == 0
    out = capsys.readouterr().out
    for incident in CATALOGUE:
        assert f"{incident.name}: {incident.title}" in out and incident.anti_fix in out


def test_wilson_intervals_explain_the_tiny_set() -> None:
    low, high = wilson_interval(6, 9)
    assert low < 0.5556 < high and high - low > 0.4
    low, high = wilson_interval(1892, 2400)
    assert (high - low) / 2 < 0.02


def test_normalising_maps_known_spellings_and_leaves_unknown_ones_for_validation() -> None:
    frame = pd.DataFrame({data.LABEL: [" Yes", "NO", "1", "churned", "maybe"]})
    assert normalise_labels(frame)[data.LABEL].tolist() == ["yes", "no", "yes", "yes", "maybe"]


def test_attempt_checks_a_learners_fix_and_reports_its_error(lab_for: LabFactory) -> None:
    """Lab 05's check cells: a fix function is verified before and after; an exception is reported, not raised."""
    incident, lab = by_name("git_retag"), lab_for("git_retag")
    good = attempt(incident, lab, incident.repair)
    assert good.fixed and good.before is not None and not good.before and good.error is None
    assert (good.doctor_before, good.doctor_after) == (None, None)  # doctor cannot see a tag from outside

    def unfinished(lab: Lab) -> None:
        raise NotImplementedError("Exercise 05.9 is not done yet")

    bad = attempt(incident, lab, unfinished, verify_before=False)
    assert not bad.fixed and bad.after is None and bad.before is None
    assert bad.error == "NotImplementedError: Exercise 05.9 is not done yet"
    assert "the fix raised NotImplementedError" in bad.summary()
    assert not attempt(incident, lab, "not a function", verify_before=False).fixed  # type: ignore[arg-type]


def test_the_port_anti_fix_passes_doctor_but_not_verify(lab_for: LabFactory) -> None:
    """pkill -f, confined to the drill's processes: the port is free (doctor is content), the bystander is gone."""
    incident, lab = by_name("port_in_use"), lab_for("port_in_use")
    tried = attempt(incident, lab, incident.anti_repair, verify_before=False)
    assert (tried.doctor_before, tried.doctor_after) == ("fail", "ok")
    assert tried.after is not None and not tried.after and "bystander" in tried.after.detail
    assert lab.processes == []


#: A helper that is ready (prints its name) only once the file named by its second argument
#: exists, and gives up silently after 10 s: started and waited for one at a time, a helper that
#: waits for the next one's file would never be ready.
_WAITS_FOR = (
    "import os, sys, time\n"
    "for _ in range(200):\n"
    "    if os.path.exists(sys.argv[2]):\n"
    "        break\n"
    "    time.sleep(0.05)\n"
    "else:\n"
    "    sys.exit(1)\n"
    "print(sys.argv[1], flush=True)\n"
    "time.sleep(60)\n"
)
_MAKES = "import pathlib, sys, time; pathlib.Path(sys.argv[2]).touch(); print(sys.argv[1], flush=True); time.sleep(60)"


def test_helpers_started_together_overlap_are_each_ready_and_stop_with_the_lab(lab_for: LabFactory) -> None:
    """Lab.start_all (the port drill's two holders): every helper starts before any is waited for,
    each first line comes back with its own process, and a helper that exits without a line is a
    clear error; the lab stops every helper it started, the silent one's neighbour included."""
    lab = lab_for("port_in_use")
    flag = lab.scratch / "second-started"
    flag.unlink(missing_ok=True)
    (first, one), (second, two) = lab.start_all(
        [[sys.executable, "-c", _WAITS_FOR, "one", str(flag)], [sys.executable, "-c", _MAKES, "two", str(flag)]]
    )
    assert (one, two) == ("one", "two") and [first, second] == lab.processes
    with pytest.raises(MlopsError, match="exited before it was ready"):
        lab.start_all([[sys.executable, "-c", _MAKES, "three", str(flag)], [sys.executable, "-c", "pass"]])
    started = [process.pid for process in lab.processes]
    assert len(started) == 4
    lab.stop_processes()
    assert lab.processes == [] and not any(procs.alive(pid) for pid in started)


def test_the_tolerance_anti_fix_is_refused(lab_for: LabFactory) -> None:
    incident, lab = by_name("tiny_eval_noise"), lab_for("tiny_eval_noise")
    tried = attempt(incident, lab, incident.anti_repair, verify_before=False)
    assert tried.after is not None and "tolerance was raised to 0.2" in tried.after.detail and not tried.fixed


def test_a_lab_command_forked_from_the_warm_interpreter_shows_what_a_fresh_one_shows(
    lab_for: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the warm interpreter running (the module's fixture started it, as a forked kernel
    does), ``Lab.cli`` forks its commands; without it, a command runs in a fresh interpreter, with
    the same exit status and output (compared on a failing command: a symptom is its error)."""
    from scripts.mlops import warm

    lab = lab_for("label_spelling")
    forked: list[list[str]] = []
    run_module = warm.run_module
    monkeypatch.setattr(warm, "run_module", lambda argv, **kw: forked.append(list(argv)) or run_module(argv, **kw))
    failing = ("baseline", "--model", lab.model, "--alias", "nowhere", "--data", str(lab.data_file("eval")))
    assert warm.running()
    listed, refused = lab.cli("versions", "--model", lab.model), lab.cli(*failing)
    assert [argv[3] for argv in forked] == ["versions", "baseline"]
    assert listed.code == 0 and "production" in listed.text, listed
    assert refused.code == 1 and "has no alias 'nowhere'" in refused.text, refused
    monkeypatch.setattr(warm, "running", lambda: False)
    assert lab.cli(*failing) == refused
    assert len(forked) == 2  # that one ran fresh
