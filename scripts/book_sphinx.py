"""A small Sphinx extension for the book (both editions): pages that load cleanly offline.

* Jupyter Book 1 registers sphinx-thebe's inline configuration script twice on every page, so
  the browser reports ``Identifier 'THEBE_JS_URL' has already been declared`` on each load (the
  browser tests fail on any console error): repeated scripts are dropped.
* MyST-NB asks Sphinx to put MathJax on every page, in case a notebook output holds LaTeX; here
  only pages with an equation load it (MathJax itself is served from ``_static/mathjax`` by
  sphinx-mathjax-offline, never from a CDN).

It is listed in ``_config.yml`` under ``sphinx.extra_extensions``; ``scripts`` is installed
editable, so Sphinx can import it.
"""

from __future__ import annotations

from typing import Any


def _is_mathjax(script: Any) -> bool:
    filename = str(getattr(script, "filename", "") or "")
    body = str(getattr(script, "attributes", {}).get("body", ""))
    return "mathjax" in filename.lower() or body.startswith("window.MathJax")


def unique_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Keep the first of repeated ``script_files`` entries; MathJax only where the page has math."""
    scripts = context.get("script_files")
    if not scripts:
        return
    if doctree is None or not app.env.get_domain("math").has_equations(pagename):
        scripts = [script for script in scripts if not _is_mathjax(script)]
    kept: list[Any] = []
    seen: list[tuple[Any, Any]] = []
    for script in scripts:
        key = (getattr(script, "filename", script) or None, getattr(script, "attributes", None))
        if key not in seen:  # the priority may differ between the two registrations
            seen.append(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app: Any) -> dict[str, Any]:
    """Register the page hook (late, after the themes have added their scripts)."""
    app.connect("html-page-context", unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
