"""GitHub Actions' side of a workflow step: step outputs, the run summary, pull-request comments.

Inside a step, results go where GitHub reads them: ``GITHUB_OUTPUT`` (step outputs),
``GITHUB_STEP_SUMMARY`` (the run's summary page) and a comment on the pull request. Offline
(:mod:`scripts.mlops.ci_local` sets ``MLOPS_CI_OFFLINE``) the comment goes into a file of the
emulation folder instead of the REST API. Outside a step, outputs and summaries are no-ops.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import MlopsError


def set_output(name: str, value: str) -> None:
    """Record a step output (no-op outside a workflow step)."""
    from .ci_local import write_key_value

    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        write_key_value(path, name, value)


def add_summary(markdown: str) -> None:
    """Append to the run's summary page (no-op outside a workflow step)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(markdown.rstrip("\n") + "\n\n")


def post_comment(body: str) -> str:
    """Comment ``body`` on the pull request: offline into a file, on GitHub through its REST API."""
    offline = os.environ.get("MLOPS_CI_OFFLINE")
    if offline:
        path = Path(offline) / "pr-comment.md"
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(body.rstrip("\n") + "\n")
        return f"comment written to {path} (offline)"
    event_path, token = os.environ.get("GITHUB_EVENT_PATH"), os.environ.get("GH_TOKEN")
    repository, api = os.environ.get("GITHUB_REPOSITORY"), os.environ.get("GITHUB_API_URL", "https://api.github.com")
    if not (event_path and token and repository):
        raise MlopsError(
            "not in a pull-request workflow run (GITHUB_EVENT_PATH, GH_TOKEN or GITHUB_REPOSITORY unset)",
            "run this as a workflow step with `env: GH_TOKEN: ${{ github.token }}`.",
        )
    import urllib.request  # only here: with http.client, ssl and email it is most of a command's start-up

    number = json.loads(Path(event_path).read_text())["pull_request"]["number"]
    request = urllib.request.Request(
        f"{api}/repos/{repository}/issues/{int(number)}/comments",
        method="POST",
        data=json.dumps({"body": body}).encode(),
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - fixed https API URL
        return f"commented on pull request #{number} (HTTP {response.status})"
