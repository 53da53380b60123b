"""The book's two editions: the student edition (``make book``) and the instructor edition.

The student edition is the repository's own ``_config.yml`` and ``_toc.yml``: chapters and the
generated student notebooks, never a solution. The instructor edition adds the executed
reference solutions (rendered from their stored outputs: a solution is never executed at build
time; only the chapters' figure cells run, from the execution cache both editions share),
the grading manifests as tables (points per check) and the authoring guide. Its configuration,
table of contents and the grading page are generated into ``_instructors/`` (git-ignored) by::

    python -m scripts.book_editions            # write _instructors/ from the current files

and ``make book-instructors`` then builds it with ``jupyter-book build . --config
_instructors/_config.yml --toc _instructors/_toc.yml --path-output _build/instructors``, so the
site lands in ``_build/instructors/_build/html`` with its own cache, apart from the student
edition's ``_build/html``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "scripts" / "grading" / "manifests"
OUT = REPO / "_instructors"
GUIDE = "book/instructors"
PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def text(value: Any) -> str:
    """Plain text for a Markdown table cell: every ASCII punctuation character backslash-escaped."""
    return PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))


def code(value: Any, limit: int = 120) -> str:
    """A short code span for a table cell (plain escaped text when it holds a pipe or backtick)."""
    shown = " ".join(str(value).split())
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return text(shown) if ("|" in shown or "`" in shown) else f"`{shown}`"


def manifests() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every lab's manifest with its recorded answer key, in lab order."""
    found = []
    for path in sorted(MANIFESTS.glob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        key_path = path.with_name(f"{path.stem}.expected.json")
        key = json.loads(key_path.read_text(encoding="utf-8")) if key_path.is_file() else {}
        found.append((json.loads(path.read_text(encoding="utf-8")), key))
    return found


def _judged(entry: dict[str, Any]) -> str:
    if "fact" in entry:
        how = "workspace fact " + code(" → ".join(map(str, entry["fact"])))
    else:
        how = "answer " + code(entry["answer"])
        if "derive" in entry:
            how += f" read with {code(entry['derive'])}"
            if "pick" in entry:
                how += ", part " + code(" → ".join(map(str, entry["pick"])))
    if entry.get("op") == "exists":
        how += ", must exist"
    elif entry.get("op") == "includes":
        how += ", must include the expected keys"
    if "tol" in entry:
        how += f", within {entry['tol']:g}"
    return how


def _expected(entry: dict[str, Any], key: dict[str, Any], ident: str) -> str:
    if entry.get("op") == "exists":
        return "–"
    if "expect" in entry:
        return code(json.dumps(entry["expect"]), 60)
    if "expect_fact" in entry:
        return "the submission's own " + code(" → ".join(map(str, entry["expect_fact"])), 60)
    values = key.get("values", {})
    return code(json.dumps(values[ident], ensure_ascii=False), 60) if ident in values else "recorded"


def grading_page(labs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """The grading manifests as one Markdown page: per lab, per exercise, points per check."""
    lines = [
        "# Grading: points per check",
        "",
        "Generated from `scripts/grading/manifests/` (written by `make labs`), the files the grader",
        "reads. Each row is one judgment of a check cell: what it reads from the student's kernel",
        "(*answer*) or workspace (*fact*), what it is compared with (recorded from the reference",
        "solution unless stated), its points and the hint a student sees when it fails.",
    ]
    for manifest, key in labs:
        lines += ["", f"## Lab {manifest['lab']}: `{manifest['notebook']}` ({manifest['max_points']:g} points)", ""]
        lines += ["| exercise | points | checks |", "|---|---:|---|"]
        for exercise, info in manifest["exercises"].items():
            lines.append(f"| {text(exercise)} | {info['points']:g} | {', '.join(code(c) for c in info['checks'])} |")
        lines += [
            "",
            "| check | exercise | what is judged | how | expected | points | hint |",
            "|---|---|---|---|---|---:|---|",
        ]
        for cell in manifest["cells"]:
            if cell.get("role") != "lab-check":
                continue
            for entry in cell["lab"].get("judge", []):
                ident = f"{cell['id']}/{entry['id']}"
                lines.append(
                    f"| {code(ident)} | {text(cell['lab']['exercise'])} | {text(entry.get('what', ''))} | "
                    f"{_judged(entry)} | {_expected(entry, key, ident)} | {float(entry['points']):g} | "
                    f"{text(entry.get('hint', '')) or '–'} |"
                )
        for hidden in manifest.get("hidden", []):
            for entry in hidden.get("judge", []):
                ident = f"{hidden['id']}/{entry['id']}"
                lines.append(
                    f"| {code(ident)} (held out) | {text(hidden['exercise'])} | {text(entry.get('what', ''))} | "
                    f"{_judged(entry)} | {_expected(entry, key, ident)} | {float(entry['points']):g} | "
                    f"{text(entry.get('hint', hidden.get('hint', ''))) or '–'} |"
                )
    return "\n".join(lines) + "\n"


def instructor_toc(toc: dict[str, Any], solutions: list[str]) -> dict[str, Any]:
    """The student table of contents plus a part for the solutions, the grading page and the guide."""
    parts = [part for part in toc["parts"] if part.get("caption") != "For instructors"]
    chapters = [{"file": GUIDE}, {"file": "_instructors/grading"}]
    chapters += [{"file": s, "title": f"Reference solution: Lab {Path(s).stem[:2]}"} for s in solutions]
    return {**toc, "parts": [*parts, {"caption": "For instructors", "chapters": chapters}]}


def instructor_config(config: dict[str, Any]) -> dict[str, Any]:
    """The student configuration with the solutions readable and the title saying which edition this is."""
    excluded = [p for p in config.get("exclude_patterns", []) if p not in ("solutions", "_instructors")]
    sphinx = config.get("sphinx", {})
    return {
        **config,
        "title": f"{config['title']} (instructor edition)",
        "exclude_patterns": excluded,
        # The chapters' figures run as in the student edition, from the same cache; labs/ and
        # solutions/ stay excluded from execution (the solutions show their stored outputs).
        "execute": config.get("execute", {}),
        "sphinx": {
            **sphinx,
            "config": {
                **sphinx.get("config", {}),
                # Check cells also publish their verdicts as application/vnd.mlops-labs.check+json
                # for the grader; the same verdicts are printed, and that text is what the page shows.
                "suppress_warnings": ["mystnb.unknown_mime_type"],
            },
        },
    }


def write(out: Path = OUT) -> list[Path]:
    """Generate the instructor edition's configuration, table of contents and grading page."""
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    solutions = [f"solutions/{path.stem}" for path in sorted((REPO / "solutions").glob("*.ipynb"))]
    files = {
        out / "_config.yml": "# Generated by `python -m scripts.book_editions`: do not edit.\n"
        + yaml.safe_dump(instructor_config(config), sort_keys=False, allow_unicode=True),
        out / "_toc.yml": "# Generated by `python -m scripts.book_editions`: do not edit.\n"
        + yaml.safe_dump(instructor_toc(toc, solutions), sort_keys=False, allow_unicode=True),
        out / "grading.md": grading_page(manifests()),
    }
    out.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != content:  # unchanged: keeps the build cache
            path.write_text(content, encoding="utf-8")
    return list(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.book_editions", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the generated files (default _instructors/)")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
