"""Run one submission's cells in a fresh kernel and stream what happened (runs *inside* the sandbox).

``python -m scripts.grading.runner`` reads a job (JSON on stdin: the cells to run, each with
the answer expressions to export after it, and the per-cell timeout), then writes one JSON line
per cell to its original stdout::

    {"cell": "ex1-check", "status": "ok" | "error" | "timeout" | "died", "error": "...",
     "answers": {"hardest_slice": {"value": "student"}}}

The runner is as untrusted as the kernel it starts (same sandbox): the grader treats every line
as the student's claim. It still makes forging harder: its stdout is moved to a private
descriptor before the kernel starts (the kernel's stdout and stderr go to /dev/null) and it
makes itself non-dumpable, so a same-user process cannot open it through ``/proc``.

Timeouts count the whole cell: the reply *and* the output stream until the kernel is idle.
A cell still running at its deadline is interrupted; a kernel that ignores the interrupt, or
dies, is killed and restarted, and the cells that had succeeded are replayed.
"""

from __future__ import annotations

import ast
import base64
import ctypes
import json
import os
import sqlite3
import sys
import time
import uuid
from queue import Empty
from typing import Any, TextIO

from jupyter_client import KernelManager

from .forked import ForkedProvisioner, KernelTemplate

MAX_ERROR = 4000
MAX_SNAPSHOT = 24 * 1024**2  # bytes of database per snapshot
GRACE = 3.0  # seconds an interrupted cell gets to stop


def _private_stdout() -> TextIO:
    """Keep the real stdout for the results; point fd 1 at /dev/null (fd 2 stays the grader's log)."""
    fd = os.dup(1)
    os.set_inheritable(fd, False)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4: no /proc/<pid>/fd, no ptrace
    except (OSError, AttributeError):
        pass
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


class Kernel:
    """One IPython kernel with a deadline-aware ``run``."""

    def __init__(self, kernel_name: str, template: KernelTemplate | None = None) -> None:
        self.kernel_name = kernel_name
        self.template = template
        self.restart_needed = False
        self.client: Any = None
        self.start()

    def start(self) -> None:
        self.manager = KernelManager(kernel_name=self.kernel_name)  # a fresh one: a shut-down manager cannot restart
        if self.template is not None:  # forked from the warm template instead of a new interpreter
            provisioner = ForkedProvisioner(
                kernel_id=str(uuid.uuid4()), kernel_spec=self.manager.kernel_spec, parent=self.manager
            )
            provisioner.template = self.template
            self.manager.provisioner = provisioner
        self.manager.start_kernel(cwd=os.getcwd(), stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def restart(self) -> None:
        try:
            self.client.stop_channels()
            self.manager.shutdown_kernel(now=True)
        except Exception:  # the kernel is already gone: nothing to shut down
            pass
        self.start()

    def stop(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            self.manager.shutdown_kernel(now=True)

    def run(self, source: str, timeout: float, user_expressions: dict[str, str] | None = None) -> dict[str, Any]:
        """Execute ``source``; return ``{"status", "error", "user_expressions"}`` within ``timeout`` seconds."""
        msg_id = self.client.execute(
            source, store_history=False, allow_stdin=False, user_expressions=user_expressions or {}, stop_on_error=False
        )
        deadline = time.monotonic() + timeout
        outcome = self._wait(msg_id, deadline)
        if outcome is not None:
            return outcome
        if not self.manager.is_alive():
            return {
                "status": "died",
                "error": "the kernel died (the process crashed or exited) while running this cell",
            }
        self.manager.interrupt_kernel()
        if self._wait(msg_id, time.monotonic() + GRACE) is None:
            self.restart_needed = True
        return {"status": "timeout", "error": f"timed out after {timeout:g} s (output streaming included)"}

    def _wait(self, msg_id: str, deadline: float) -> dict[str, Any] | None:
        """Drain iopub and shell until the cell's reply has come and the kernel is idle again."""
        reply: dict[str, Any] | None = None
        idle = False
        error = None
        while time.monotonic() < deadline:
            if not self.manager.is_alive():
                return {
                    "status": "died",
                    "error": "the kernel died (the process crashed or exited) while running this cell",
                }
            wait = max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                msg = self.client.get_iopub_msg(timeout=wait)
                if msg["parent_header"].get("msg_id") == msg_id:
                    kind = msg["msg_type"]
                    if kind == "error":
                        error = _cap(f"{msg['content'].get('ename')}: {msg['content'].get('evalue')}")
                    elif kind == "status" and msg["content"].get("execution_state") == "idle":
                        idle = True
            except Empty:
                pass
            while reply is None:
                try:
                    msg = self.client.get_shell_msg(timeout=0)
                except Empty:
                    break
                if msg["parent_header"].get("msg_id") == msg_id:
                    reply = msg["content"]
            if reply is not None and idle:
                status = reply.get("status")
                if status == "ok":
                    return {"status": "ok", "error": None, "user_expressions": reply.get("user_expressions", {})}
                suppressed = error is None  # the reply says error, but no traceback was shown
                error = error or f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')} (traceback suppressed)"
                return {"status": "error", "error": _cap(error), "suppressed": suppressed}
        return None


def _cap(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR] + f" … [cut: {len(text) - MAX_ERROR} more characters]"


def _answers(kernel: Kernel, expressions: dict[str, str], timeout: float) -> dict[str, Any]:
    """Ask the kernel for the answers as JSON text (via user_expressions) and parse it."""
    call = f"__import__('scripts.grading.export', fromlist=['dumps']).dumps(globals(), {expressions!r})"
    outcome = kernel.run("pass", timeout, {"answers": call})
    if outcome["status"] != "ok":
        return {name: {"error": f"could not export: {outcome['error']}"} for name in expressions}
    found = outcome.get("user_expressions", {}).get("answers", {})
    try:
        text = ast.literal_eval(found["data"]["text/plain"])
        answers = json.loads(text)
        if not isinstance(answers, dict):
            raise ValueError("not a dict")
        return {name: answers.get(name, {"error": "not exported"}) for name in expressions}
    except (KeyError, TypeError, ValueError, SyntaxError, MemoryError, RecursionError):
        reason = found.get("evalue") if isinstance(found, dict) else None
        return {
            name: {"error": f"could not export: {reason or 'the answer was not plain data'}"} for name in expressions
        }


def _snapshot(database: str) -> str | None:
    """A consistent copy of the workspace's database right now (base64), or None if there is none.

    The grader reads it after the kernel has gone, so judgments about the registry see the state
    right after their check cell, not what later cells (or a checkpoint) made of it.
    """
    if not os.path.isfile(database) or os.path.islink(database):
        return None
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        copy = sqlite3.connect(":memory:")
        source.backup(copy)
        source.close()
        data = copy.serialize()
        copy.close()
    except (sqlite3.Error, OSError, MemoryError):
        return None
    return base64.b64encode(data).decode("ascii") if len(data) <= MAX_SNAPSHOT else None


def warm_main() -> int:
    """The runner placed in a sandbox by :mod:`scripts.grading.zygote`: its kernels are forked, not started."""
    return main(KernelTemplate.fork())  # before anything starts a thread


def main(template: KernelTemplate | None = None) -> int:
    job = json.loads(sys.stdin.read())
    out = _private_stdout()
    timeout = float(job["timeout"])
    kernel = Kernel(job.get("kernel_name", "python3"), template)
    succeeded: list[str] = []
    try:
        for cell in job["cells"]:
            kernel.restart_needed = False
            outcome = kernel.run(cell["source"], timeout)
            line: dict[str, Any] = {
                "cell": cell["id"],
                "status": outcome["status"],
                "error": outcome.get("error"),
                "suppressed": bool(outcome.get("suppressed")),
            }
            if outcome["status"] == "ok":
                succeeded.append(cell["source"])
            if outcome["status"] == "died" or kernel.restart_needed or not kernel.manager.is_alive():
                kernel.restart()
                for source in succeeded:  # best effort: later cells fail on their own if state is missing
                    if kernel.run(source, timeout)["status"] != "ok":
                        break
            if cell.get("answers"):
                line["answers"] = _answers(kernel, cell["answers"], timeout)
            if cell.get("snapshot") and job.get("database"):
                line["snapshot"] = _snapshot(job["database"])
            out.write(json.dumps(line) + "\n")
    finally:
        kernel.stop()
    out.write(json.dumps({"done": True}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
