"""Start the model server (:mod:`scripts.mlops.app`) as a child process, from a notebook or a test.

:func:`running_server` (one alias) and :func:`running_servers` (several, started in
parallel) bind a listening socket on ``127.0.0.1`` with port 0 (the system picks a free
port) *in this process* and hand it to the child, so the port is known at once and nothing
can take it in between. They wait until ``/health`` answers (polling with a deadline, never a
fixed sleep), read the served version from it, and **always** stop the process afterwards:
terminate, then kill after a grace period, also when the body raises or start-up fails. A
failed start raises :class:`~scripts.mlops.errors.MlopsError` with the end of the server's
stderr.

The child is forked from the warm interpreter of :mod:`scripts.mlops.warm` (MLflow, skops and
FastAPI imported once per notebook or test run), or is a fresh interpreter when ``MLOPS_COLD=1``,
another ``python`` is asked for, or the environment sets start-up variables differently.

The child uses the caller's MLflow tracking and registry URIs (relative ``sqlite:///``
paths are made absolute), so it serves from the same registry the notebook just wrote to. This
process resolves the alias in that registry and tells the child the version, run id and local
artifact folder (:func:`resolve_for_child`), so the child loads the model without importing
MLflow; when it cannot (alias unset, artifacts missing), the child resolves it and says why not.
As a safety net for notebook kernels, servers still running when Python exits are stopped
(``weakref.finalize``), and on Linux a server also receives SIGTERM if its parent dies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import warm
from .errors import MlopsError

if TYPE_CHECKING:
    import httpx

    from .app import Resolved

HOST = "127.0.0.1"
#: A server process: a fresh interpreter, or a child of the warm one (:mod:`scripts.mlops.warm`).
Process = subprocess.Popen[bytes] | warm.WarmProcess
_POLL = 0.05
_loopback: tuple[int, httpx.Client] | None = None
_loopback_lock = threading.Lock()


def loopback_client() -> httpx.Client:
    """This process's HTTP client for requests to servers on this machine.

    ``httpx.get`` and ``httpx.post`` build a new client for every request, and with it an SSL
    context that loads the certificate bundle (27 ms of CPU per request on the course machine,
    for plain ``http://`` too: 0.4 s of Lab 01's cells). This one is built once per process (a
    forked child builds its own) and keeps no idle connection, so every request opens a new one,
    as ``httpx.get`` does, to whichever server now listens on the port.
    """
    global _loopback
    import httpx

    with _loopback_lock:
        if _loopback is None or _loopback[0] != os.getpid():
            _loopback = (os.getpid(), httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)))
        return _loopback[1]


@dataclass
class RunningServer:
    """A started server. Use :func:`running_server` (a context manager) or :func:`start_server` + ``stop()``."""

    model: str
    alias: str
    url: str
    port: int
    version: int
    process: Process
    _finalizer: Any = field(default=None, repr=False)

    def health(self, timeout: float = 5.0) -> dict[str, Any]:
        """The server's ``/health`` document."""
        response = loopback_client().get(f"{self.url}/health", timeout=timeout)
        response.raise_for_status()
        return response.json()

    def predict(self, records: list[dict[str, Any]], timeout: float = 10.0) -> Any:
        """POST ``{"records": records}`` to ``/predict``; the ``httpx.Response`` (any status)."""
        return loopback_client().post(f"{self.url}/predict", json={"records": records}, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the server (terminate, then kill after ``grace`` seconds); its exit code."""
        if self._finalizer is not None:
            self._finalizer.detach()
        return _stop(self.process, grace)


def _stop(process: Process, grace: float = 5.0) -> int | None:
    if process.poll() is None:
        try:
            process.terminate()
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)
        except ProcessLookupError:  # pragma: no cover - exited in between
            pass
    return process.returncode


def child_tracking_env() -> dict[str, str]:
    """``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` of this process, usable from any folder."""
    import mlflow

    return {
        "MLFLOW_TRACKING_URI": _absolute(mlflow.get_tracking_uri()),
        "MLFLOW_REGISTRY_URI": _absolute(mlflow.get_registry_uri()),
    }


def resolve_for_child(model: str, alias: str, env: Mapping[str, str]) -> Resolved | None:
    """``models:/model@alias`` resolved with the registry the child would use, or None.

    The version, its run and the local folder of its artifacts are what the child needs to
    load the model without MLflow. None (the child resolves the alias itself, and reports any
    problem in its own words) when the alias is not set, the registry cannot be read, or the
    artifacts are not in a local folder.
    """
    import mlflow

    from .app import Resolved, local_model_dir

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_REGISTRY_URI"])
    try:
        found = client.get_model_version_by_alias(model, alias)
        folder = local_model_dir(model, int(found.version), client)
    except Exception:  # noqa: BLE001 - the child reports it, as a server started from a terminal would
        return None
    if not (folder / "MLmodel").is_file():
        return None
    return Resolved(int(found.version), found.run_id or "", folder)


def _absolute(uri: str) -> str:
    """``sqlite:///relative/x.db`` -> ``sqlite:////abs/relative/x.db`` (other URIs unchanged)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _death_signal_hook() -> Callable[[], None] | None:
    """On Linux, a function that makes the child get SIGTERM when its parent thread dies.

    libc is loaded here, in the parent: the hook runs between fork and exec, where importing
    or loading anything could deadlock a multi-threaded parent such as a notebook kernel.
    Caveat: the signal follows the *thread* that started the server, so start servers from
    the main thread (notebook cells and tests do).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def hook() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return hook


@dataclass
class _Launch:
    """A server process that was started but is not known to be healthy yet."""

    model: str
    alias: str
    port: int
    process: Process
    logs: Path
    finalizer: Any

    def abort(self) -> None:
        self.finalizer()  # stops the process (once)
        shutil.rmtree(self.logs, ignore_errors=True)


def _launch(
    model: str,
    alias: str,
    env: Mapping[str, str] | None,
    cwd: str | Path | None,
    python: str,
) -> _Launch:
    from .app import listening_socket
    from .workspace import active

    child_env = {**os.environ, **child_tracking_env(), **(env or {})}
    child_env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    child_env["PYTHONUNBUFFERED"] = "1"
    workspace = active()
    resolved = resolve_for_child(model, alias, child_env)
    sock = listening_socket(HOST, 0)
    port = int(sock.getsockname()[1])
    command = [python, "-m", "scripts.mlops"]
    if workspace is not None:  # the server opens the same workspace folder (the URI comes from env)
        command += ["--workspace", workspace.name]
    command += ["serve", "--model", model, "--alias", alias]
    if resolved is not None:  # the child loads this folder and never imports MLflow
        command += ["--version", str(resolved.version), "--run-id", resolved.run_id]
        command += ["--model-dir", str(resolved.model_dir)]
    command += ["--fd", str(sock.fileno())]

    logs = Path(tempfile.mkdtemp(prefix="mlops-serve-"))
    process: Process
    try:
        with (logs / "stdout.log").open("wb") as out, (logs / "stderr.log").open("wb") as err:
            if python == sys.executable and warm.enabled() and warm.fits(child_env):
                # Forked from the warm interpreter: MLflow, skops and FastAPI are imported already.
                process = warm.start(
                    [*command[2:-1], "{fd}"],
                    env=child_env,
                    cwd=str(cwd) if cwd is not None else os.getcwd(),
                    output=out.name,
                    errors=err.name,
                    sock=sock,
                )
            else:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=str(cwd) if cwd is not None else None,
                    env=child_env,
                    pass_fds=(sock.fileno(),),
                    preexec_fn=_death_signal_hook(),
                )
    finally:
        sock.close()  # the child holds its own copy of the listening socket
    # Safety net: stop the server when Python exits without stop() (e.g. a notebook kernel).
    finalizer = weakref.finalize(process, _stop, process, 2.0)
    return _Launch(model, alias, port, process, logs, finalizer)


def _await(launch: _Launch, timeout: float) -> RunningServer:
    try:
        server = _wait_until_healthy(launch, timeout)
    except BaseException:
        launch.abort()
        raise
    server._finalizer = launch.finalizer
    weakref.finalize(server, shutil.rmtree, launch.logs, True)
    return server


def start_server(
    model: str,
    alias: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 60.0,
    python: str = sys.executable,
) -> RunningServer:
    """Start a server for ``models:/model@alias`` and wait until it is healthy; prefer :func:`running_server`.

    ``env`` adds to (or overrides) this process's environment; the tracking URIs default to
    this process's. ``cwd`` defaults to the current folder. Raises :class:`MlopsError` with
    the server's stderr if it exits or is not healthy within ``timeout`` seconds. Call
    ``stop()`` on the result when done.
    """
    return _await(_launch(model, alias, env, cwd, python), timeout)


def _wait_until_healthy(launch: _Launch, timeout: float) -> RunningServer:
    """Poll ``/health`` until it answers 200 for the right model, the child exits, or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    url = f"http://{HOST}:{launch.port}"
    err_path = launch.logs / "stderr.log"

    def failure(what: str) -> MlopsError:
        tail = _tail(err_path) or "(no output on stderr)"
        return MlopsError(
            f"the server for models:/{launch.model}@{launch.alias} {what}. Its stderr ended with:\n{tail}",
            "read the server's error above; `python -m scripts.mlops serve --model "
            f"{launch.model} --alias {launch.alias} --port 0` shows the same in a terminal.",
        )

    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if launch.process.poll() is not None:
                raise failure(f"exited with status {launch.process.returncode} before it became healthy")
            try:
                response = http.get(f"{url}/health")
            except httpx.HTTPError:
                response = None  # the socket accepts, but the app is still loading: retry
            if response is not None and response.status_code == 200:
                health = response.json()
                if health.get("model") != launch.model or health.get("alias") != launch.alias:
                    raise failure(f"answered /health for {health.get('model')}@{health.get('alias')}")
                return RunningServer(
                    launch.model, launch.alias, url, launch.port, int(health["version"]), launch.process
                )
            time.sleep(_POLL)
    raise failure(f"was not healthy within {timeout:.0f} s")


@contextmanager
def running_server(
    model: str,
    alias: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 60.0,
) -> Iterator[RunningServer]:
    """Serve ``models:/model@alias`` on 127.0.0.1 for the duration of a ``with`` block.

    >>> with running_server("churn-classifier", "production") as server:   # doctest: +SKIP
    ...     server.health()["version"]
    """
    server = start_server(model, alias, env=env, cwd=cwd, timeout=timeout)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_servers(
    model: str,
    aliases: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 60.0,
) -> Iterator[dict[str, RunningServer]]:
    """Serve several aliases of ``model`` side by side, started in parallel; ``{alias: server}``.

    All servers are stopped when the block ends; if one fails to start, the others are stopped too.
    """
    launches: list[_Launch] = []
    servers: dict[str, RunningServer] = {}
    try:
        for alias in aliases:
            launches.append(_launch(model, alias, env, cwd, sys.executable))
        deadline = time.monotonic() + timeout
        for launch in launches:
            servers[launch.alias] = _await(launch, max(deadline - time.monotonic(), 1.0))
        yield servers
    finally:
        for launch in launches:
            if launch.alias in servers:
                servers[launch.alias].stop()
            else:
                launch.abort()
