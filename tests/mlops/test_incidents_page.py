"""Chapter 05's troubleshooting reference is generated from the incident catalogue and covers all of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts.mlops import cli
from scripts.mlops.incidents import CATALOGUE
from scripts.mlops.incidents.page import LAB_DRILLS, label, reference_markdown

REPO = Path(__file__).resolve().parents[2]
CHAPTER = REPO / "book" / "05-troubleshooting.md"
GENERATED = REPO / "book" / "_incidents.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    assert GENERATED.read_text() == reference_markdown(), (
        "book/_incidents.md is out of date: python -m scripts.mlops incidents --markdown > book/_incidents.md"
    )


def test_the_chapter_includes_the_reference() -> None:
    assert re.search(r"^```\{include\} _incidents\.md\n```$", CHAPTER.read_text(), flags=re.M)


@pytest.mark.parametrize("incident", CATALOGUE, ids=[i.name for i in CATALOGUE])
def test_every_incident_has_its_section_with_the_exact_texts(incident: object) -> None:
    from scripts.mlops.incidents import Incident

    assert isinstance(incident, Incident)
    page = GENERATED.read_text()
    assert f"({label(incident)})=\n### {incident.title}\n" in page, f"{incident.name} has no section"
    section = page.split(f"({label(incident)})=", 1)[1].split("\n(incident-", 1)[0]
    for text in (incident.symptom, incident.cause, incident.fix, incident.verification, incident.anti_fix):
        assert text in section, f"{incident.name}: {text!r} is not on the page"
    assert f'drill(by_name("{incident.name}"), Lab.current())' in section


def test_the_drills_the_page_links_to_the_lab_are_in_the_lab() -> None:
    lab = (REPO / "solutions" / "05-troubleshooting.ipynb").read_text()
    for name in LAB_DRILLS:
        assert f'\\"{name}\\"' in lab, f"the page says Lab 05 drills {name}, but the notebook does not use it"


def test_the_cli_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["incidents", "--markdown"]) == 0
    assert capsys.readouterr().out == reference_markdown()
