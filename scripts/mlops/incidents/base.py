"""What every incident shares: the lab it breaks, the symptom it shows, the verdict of its verify step.

An :class:`Incident` breaks a :class:`Lab` in one known way (``break_``), shows the symptom by
running the real thing (``observe``: the command's exit code and output, the server's HTTP
status and body, the exception MLflow raised; never a hand-written imitation), applies the
right fix (``repair``) and checks the result (``verify``: fails while the lab is broken, or
when an anti-fix "fixed" it by destroying something). ``cleanup`` stops every process the
incident started; :func:`drill` runs the whole cycle and always cleans up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..errors import MlopsError
from ..procs import Child, signal_session, stop_session
from ..workspace import Workspace

SymptomKind = Literal["exit", "http", "exception"]
#: How long a command an incident runs may take before it is stopped (never an endless wait).
COMMAND_TIMEOUT = 120.0


@dataclass(frozen=True)
class Symptom:
    """What the learner sees: an exit code, an HTTP status or an exception, and the real text."""

    kind: SymptomKind
    text: str
    code: int | None = None

    def __str__(self) -> str:
        head = {"exit": f"exit status {self.code}", "http": f"HTTP {self.code}", "exception": "exception"}[self.kind]
        return f"{head}\n{self.text.strip()}"


@dataclass(frozen=True)
class Verdict:
    """The result of a verify step: ``ok`` only when the incident is really fixed."""

    ok: bool
    detail: str

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class Lab:
    """The workspace an incident breaks: a folder with a registered model behind ``@production``.

    ``root`` is the folder the lab runs in (``workspace.root`` may be relative to it). Processes
    started by an incident are kept in ``processes`` and stopped by :meth:`stop_processes`;
    ``notes`` carries what ``break_`` must tell ``repair`` and ``verify`` (a port, a backup path).
    """

    workspace: Workspace
    root: Path
    model: str = "churn-classifier"
    alias: str = "production"
    processes: list[Child] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def current(cls, model: str = "churn-classifier") -> "Lab":
        """The lab of the workspace most recently opened in this process (``open_workspace``)."""
        from ..workspace import active

        workspace = active()
        if workspace is None:
            raise MlopsError("no lab workspace is open", "call open_workspace(NAME) first (the lab's setup cell does).")
        return cls(workspace, Path.cwd().resolve(), model)

    @property
    def folder(self) -> Path:
        """The workspace folder, absolute."""
        return (self.root / self.workspace.root).resolve()

    @property
    def db(self) -> Path:
        return self.folder / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.db}"

    @property
    def scratch(self) -> Path:
        """A folder for the files incidents write (CI step scripts, data batches, payloads)."""
        path = self.folder / "incidents"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def data_file(self, batch: str) -> Path:
        """One of the seeded data files (``v1``, ``v2``, ``eval``), written on first use."""
        from .. import data

        path = self.folder / "data" / data.FILENAMES[batch]
        if not path.is_file():
            data.write_datasets(path.parent)
        return path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a child command: this workspace's store, nothing inherited that points elsewhere."""
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        env.update(
            MLOPS_WORKSPACE_ROOT=str(self.folder.parent),
            MLFLOW_DISABLE_TELEMETRY="true",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def cli(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = COMMAND_TIMEOUT) -> Symptom:
        """Run ``python -m scripts.mlops --workspace NAME ARGS`` in the lab (:func:`run_module`); its exit status and output."""
        argv = ["scripts.mlops", "--workspace", self.workspace.name, *args]
        return run_module(argv, cwd=self.root, env=env if env is not None else self.env(), timeout=timeout)

    def start(
        self,
        command: Sequence[str],
        *,
        ready_line: bool = True,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[subprocess.Popen[bytes], str]:
        """Start a helper process owned by this lab, in a session of its own (so its children stop with it).

        With ``ready_line``, wait for its first line of output; otherwise its output goes to ``log``.
        """
        process = self._spawn(command, ready_line=ready_line, log=log, env=env)
        return process, self._ready(process, command) if ready_line else ""

    def start_all(
        self, commands: Sequence[Sequence[str]], *, env: Mapping[str, str] | None = None
    ) -> list[tuple[subprocess.Popen[bytes], str]]:
        """Start several helper processes side by side, then wait for each one's first line of output.

        As :meth:`start` with ``ready_line`` for each command, but their start-ups overlap.
        """
        processes = [self._spawn(command, ready_line=True, log=None, env=env) for command in commands]
        return [(process, self._ready(process, command)) for process, command in zip(processes, commands, strict=True)]

    def _spawn(
        self, command: Sequence[str], *, ready_line: bool, log: Path | None, env: Mapping[str, str] | None
    ) -> subprocess.Popen[bytes]:
        out = log.open("wb") if log is not None else None
        try:
            process = subprocess.Popen(
                list(command),
                cwd=self.root,
                env=dict(env) if env is not None else self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if ready_line else (out or subprocess.DEVNULL),
                stderr=subprocess.STDOUT if out is not None else subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        self.processes.append(process)
        return process

    @staticmethod
    def _ready(process: subprocess.Popen[bytes], command: Sequence[str]) -> str:
        line = process.stdout.readline().decode().strip() if process.stdout is not None else ""
        if not line:
            raise MlopsError(f"the helper process {list(command)[:3]} exited before it was ready")
        return line

    def stop_processes(self) -> None:
        """Stop (terminate, then kill) every process this lab started, and reap them."""
        while self.processes:
            process = self.processes.pop()
            stop_session(process)
            stdout = getattr(process, "stdout", None)  # a Popen's pipe (a warm child has none)
            if stdout is not None:
                stdout.close()


def run(command: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float = COMMAND_TIMEOUT) -> Symptom:
    """Run a command to completion (bounded by ``timeout``); exit status and combined output.

    The command runs in a session of its own, so when it overruns, the whole group it started
    (a CI step's background server included) is stopped, not just the shell.
    """
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_session(process, signal.SIGKILL)
        out, _ = process.communicate()
        return _exited(out, None, timeout)
    finally:
        signal_session(process, signal.SIGKILL)  # anything the command left running in its session
    return _exited(out, process.returncode)


def _exited(printed: bytes, code: int | None, timeout: float | None = None) -> Symptom:
    """The symptom of a command that ended with ``code`` (a signal ``N`` as ``128 + N``, as a shell
    reports it), or that overran ``timeout`` and was stopped (``code`` None: exit 124)."""
    text = printed.decode(errors="replace")
    if code is None:
        return Symptom("exit", f"(stopped after {timeout:g} s)\n{text}".strip(), 124)
    return Symptom("exit", text.strip(), 128 - code if code < 0 else code)


def run_module(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float = COMMAND_TIMEOUT) -> Symptom:
    """:func:`run` for ``python -m argv[0] argv[1:]``, one of the toolkit's own commands.

    When this process's warm interpreter is already running (a forked notebook kernel starts
    one, and so do the deploy gate's runs), the command is forked from it, as the gate's steps
    are (:mod:`scripts.mlops.warm`): the same command line, environment, folder, output and exit
    status, without a fresh interpreter's seconds of imports. Otherwise, and whenever ``env``
    sets a variable that only acts when an interpreter starts, it runs fresh (:func:`run`).
    The toolkit's commands run in the foreground and start no process of their own; one that
    overruns ``timeout`` is killed and reported as :func:`run` reports it.
    """
    from .. import warm

    if not (warm.running() and warm.fits(env)):
        return run([sys.executable, "-m", *argv], cwd=cwd, env=env, timeout=timeout)
    printed = bytearray()
    try:
        code = warm.run_module(argv, env=env, cwd=str(cwd), on_output=printed.extend, timeout=timeout)
    except subprocess.TimeoutExpired:
        return _exited(bytes(printed), None, timeout)
    return _exited(bytes(printed), code)


class Incident:
    """One failure from the troubleshooting sources, reproducible on purpose.

    Subclasses set the class attributes (the troubleshooting page's row) and implement the
    four steps. ``doctor_check`` names the :mod:`scripts.mlops.doctor` check that reports this
    incident from outside (None when doctor cannot see it).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    symptom: ClassVar[str]  # what to look for, in words; observe() shows the real thing
    cause: ClassVar[str]
    fix: ClassVar[str]
    verification: ClassVar[str]  # what verify() checks, in words: how to know it is fixed
    anti_fix: ClassVar[str]
    doctor_check: ClassVar[str | None] = None

    def break_(self, lab: Lab) -> None:
        raise NotImplementedError

    def observe(self, lab: Lab) -> Symptom:
        raise NotImplementedError

    def repair(self, lab: Lab) -> None:
        raise NotImplementedError

    def verify(self, lab: Lab) -> Verdict:
        raise NotImplementedError

    def anti_repair(self, lab: Lab) -> None:
        """Apply the anti-fix (where it can be shown safely): the symptom goes, and verify says what it destroyed."""
        raise MlopsError(f"the anti-fix of {self.name} is not reproduced", "read the anti_fix attribute instead.")

    def doctor_options(self, lab: Lab) -> dict[str, Any]:
        """Arguments for :class:`scripts.mlops.doctor.Options` that let doctor see this incident."""
        return {"workspace": str(lab.folder)}

    def cleanup(self, lab: Lab) -> None:
        """Stop what ``break_`` started; called by :func:`drill` even when a step fails."""
        lab.stop_processes()

    def describe(self) -> str:
        """The troubleshooting row: symptom, cause, fix, anti-fix."""
        return (
            f"{self.title}\n  symptom:  {self.symptom}\n  cause:    {self.cause}\n  fix:      {self.fix}\n"
            f"  verify:   {self.verification}\n  anti-fix: {self.anti_fix}"
        )


@contextmanager
def broken(incident: Incident, lab: Lab) -> Iterator[Lab]:
    """Break ``lab`` with ``incident`` for a ``with`` block; its processes are always stopped afterwards."""
    try:
        incident.break_(lab)
        yield lab
    finally:
        incident.cleanup(lab)


@dataclass(frozen=True)
class DrillRecord:
    """What one full cycle showed: the symptom, and verify before and after the fix."""

    name: str
    symptom: Symptom
    before: Verdict
    after: Verdict


def drill(incident: Incident, lab: Lab) -> DrillRecord:
    """Break, observe, verify (must fail), repair, verify (must pass); processes always stopped."""
    with broken(incident, lab):
        symptom = incident.observe(lab)
        before = incident.verify(lab)
        incident.repair(lab)
        after = incident.verify(lab)
    return DrillRecord(incident.name, symptom, before, after)


#: A fix as a learner writes it: a function that repairs the broken lab in place.
Fix = Callable[[Lab], None]


@dataclass(frozen=True)
class Attempt:
    """One try at fixing an incident: verify before (None if skipped) and after, doctor's verdict, any error.

    ``doctor_before`` and ``doctor_after`` are the statuses (``ok``/``warn``/``fail``/``skip``) of the
    doctor check that sees this incident from outside, None when doctor cannot see it. ``error``
    is the exception the fix raised (as ``Type: message``); the lab is cleaned up all the same.
    """

    name: str
    before: Verdict | None
    after: Verdict | None
    doctor_before: str | None = None
    doctor_after: str | None = None
    error: str | None = None

    @property
    def fixed(self) -> bool:
        """Verify passed after the fix, the fix raised nothing, and doctor (where it sees it) agrees."""
        return (
            self.error is None
            and self.after is not None
            and self.after.ok
            and self.doctor_after in (None, "ok", "skip")
        )

    def summary(self) -> str:
        """What happened, one line each, without volatile values beyond the verdicts' own text."""
        lines = [f"{self.name}:"]
        if self.before is not None:
            lines.append(f"  verify before the fix: {'pass' if self.before else 'FAIL'}: {self.before.detail}")
        if self.error is not None:
            lines.append(f"  the fix raised {self.error}")
        if self.after is not None:
            lines.append(f"  verify after the fix:  {'pass' if self.after else 'FAIL'}: {self.after.detail}")
        if self.doctor_before is not None or self.doctor_after is not None:
            lines.append(f"  doctor: {self.doctor_before} before, {self.doctor_after} after")
        return "\n".join(lines)


def _doctor_status(incident: Incident, lab: Lab) -> str | None:
    """The status of the doctor check that sees ``incident`` (worst of its findings), None if it cannot."""
    if incident.doctor_check is None:
        return None
    from .. import doctor

    report = doctor.diagnose(doctor.Options(**incident.doctor_options(lab)))
    statuses = [f.status for f in report.findings if f.check == incident.doctor_check]
    for status in ("fail", "warn", "ok"):
        if status in statuses:
            return status
    return "skip"


def attempt(incident: Incident, lab: Lab, fix: Fix, *, verify_before: bool = True) -> Attempt:
    """Break ``lab`` with ``incident``, apply ``fix`` (a learner's function, or ``incident.anti_repair``), verify.

    Verify runs before the fix (it must fail; skipped with ``verify_before=False`` where it is slow
    and already shown) and after it; doctor's check of the incident runs before and after too. An
    exception in ``fix`` is recorded, not raised, and every process the drill started is stopped
    whatever happens.
    """
    with broken(incident, lab):
        before = incident.verify(lab) if verify_before else None
        seen = _doctor_status(incident, lab)
        try:
            if not callable(fix):
                raise TypeError(f"the fix must be a function of the lab, found {type(fix).__name__}")
            fix(lab)
        except Exception as exc:  # noqa: BLE001 - a learner's code: report it, clean up, go on
            return Attempt(incident.name, before, None, seen, None, f"{type(exc).__name__}: {exc}")
        after = incident.verify(lab)
        healed = _doctor_status(incident, lab)
    return Attempt(incident.name, before, after, seen, healed)
