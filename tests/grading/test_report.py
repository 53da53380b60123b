"""The class report: self-contained, atomic, escaped, and it counts what the gradebook holds."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from scripts.grading import report
from scripts.grading.grade import manifest_for
from scripts.grading.results import Row

HOSTILE = '<script>alert("x")</script><img src=http://evil.example/t.png onerror=alert(1)>.ipynb'


class _Page(HTMLParser):
    """Tags, their attributes and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _check(ident: str, exercise: str, passed: bool, points: float, message: str, kind: str = "public") -> dict:
    earned = points if passed else 0.0
    return {"cell": ident.split("/")[0], "exercise": exercise, "kind": kind, "earned": earned, "possible": points,
            "outcome": "ok", "checks": [{"id": ident, "passed": passed, "earned": earned, "points": points,
                                         "message": message}]}


def _rows() -> tuple[list[Row], dict]:
    manifest = json.loads(manifest_for("00").read_text())
    full = {ex: float(info["points"]) for ex, info in manifest["exercises"].items()}
    rows = [
        Row("alice.ipynb", full, 13.0, 13.0, "ok", [], [_check("ex1-check/a", "00.1", True, 2, "hardest segment is 'student'")]),
        Row(HOSTILE, {**full, "00.1": 1.0}, 11.0, 13.0, "ok", ["tampered"],
            [_check("ex1-check/a", "00.1", False, 2, "<b>found</b> 'consumer'")], detail="</td><script>x()</script>"),
        Row("bob.ipynb", dict.fromkeys(full, 0.0), 0.0, 13.0, "invalid_json", [], detail="the file is not valid JSON"),
    ]
    return rows, manifest


def test_report_is_self_contained_and_escapes_every_submitted_value(tmp_path: Path) -> None:
    rows, manifest = _rows()
    path = report.write(tmp_path, rows, manifest)
    assert path == tmp_path / "report.html" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    text = path.read_text()
    page = _Page()
    page.feed(text)
    tags = [tag for tag, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags, "no script, no external stylesheet"
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href"):
                assert value and not re.match(r"[a-z]+://|//", value), f"{tag} {name}={value} leaves the folder"
                assert tag != "img" or value.startswith("data:image/png;base64,")
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 1 and images[0]["alt"], "the histogram is inline and has alt text"
    body = "".join(page.text)
    assert HOSTILE in body and "</td><script>x()</script>" in body, "hostile names are shown as text"
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert "feedback/alice.ipynb.md" in links and len(links) == 3
    assert all(link and re.fullmatch(r"feedback/[A-Za-z0-9._%-]+\.md", link) for link in links)


def test_report_counts_pass_rates_statuses_and_flags() -> None:
    rows, manifest = _rows()
    rates = report.check_rates(rows, manifest)
    assert [(r.id, r.passed, r.graded) for r in rates] == [("ex1-check/a", 1, 2)]
    assert rates[0].hint.startswith("drop the '(overall)' row") and rates[0].what == "hardest segment"
    text = report.render(rows, manifest)
    assert "1/2 (50 %)" in text and "<td>invalid_json<br>" in text and "<td>tampered</td>" in text
    assert "3 submissions, 2 graded without a problem" in text
    empty = report.render([], manifest)
    assert "No check ran" in empty and "<img" not in empty
