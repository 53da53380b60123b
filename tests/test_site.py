"""The built book as its readers meet it: both editions and the class report, offline.

The module builds the student edition (``make book``'s) and the instructor edition
(``make book-instructors``'s) once, strict (``-W -n``), into ``_build/site-tests/`` (Sphinx's
own cache makes a rebuild of unchanged sources take seconds), then

* checks without a browser that the student edition holds no solution (pages, search index and
  downloadable ``.ipynb`` files), that the instructor edition holds the executed solutions and
  the grading tables, and that every internal link and anchor resolves;
* opens every page of both editions and a class report in Debian's chromium, driven by
  Playwright (one browser for the module), served from 127.0.0.1: no console error, no request
  leaving the machine (the browser's proxy is a closed local port, so any other host is refused,
  and every request a page makes is recorded: one to any other host fails the test),
  images rendered, navigation, search, the labs' download buttons. A screenshot of each page type
  is saved under ``_build/site-tests/screenshots/``.

Chromium comes from the apt package ``chromium`` (``make test`` installs it when run as root);
Playwright's own browser download is never used.
"""

from __future__ import annotations

import functools
import html
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urlsplit

import nbformat
import pytest

from scripts import book_editions

REPO = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")
BUILD = REPO / "_build" / "site-tests"
SHOTS = BUILD / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# Without these, chromium contacts Google hosts (updates, field trials, sync) on start.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LABS = sorted(path.stem for path in (REPO / "labs").glob("*.ipynb"))
# book/_name.md files are parts included into a chapter, not pages of their own.
CHAPTERS = sorted(path.stem for path in (REPO / "book").glob("*.md") if not path.name.startswith("_"))
# Solution lines a chapter states on purpose (the specification, not the answer): Chapter 04 names
# the concurrency group the deploy-gate workflow must use.
TAUGHT = {"group: deploy-gate-churn-classifier"}
SOLUTION_REGION = re.compile(r"^[ \t]*# BEGIN SOLUTION\n(.*?)^[ \t]*# END SOLUTION", re.M | re.S)

HOSTILE = "<img src=x onerror=alert(1)><b>bold<b>.ipynb"  # a file name cannot hold a slash
pytestmark = pytest.mark.slow


# --- building ------------------------------------------------------------------------------------


def _build(edition: str) -> Path:
    args = [str(JUPYTER_BOOK), "build", str(REPO), "--path-output", str(BUILD / edition), "-W", "-n", "--keep-going"]
    if edition == "instructors":
        book_editions.write()
        args += ["--config", str(book_editions.OUT / "_config.yml"), "--toc", str(book_editions.OUT / "_toc.yml")]
    html = BUILD / edition / "_build" / "html"
    # The pages go, the parsed sources (.doctrees) stay: a rebuild rewrites every page from the
    # cache in seconds, and no page of a document that has since left the book survives.
    shutil.rmtree(html, ignore_errors=True)
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, f"{edition} edition: " + done.stdout[-3000:] + done.stderr[-3000:]
    return html


@pytest.fixture(scope="module")
def sites() -> dict[str, Path]:
    """Both editions, built once per module; the time each build took goes to timings.json."""
    built, timings = {}, {}
    for edition in ("student", "instructors"):
        start = time.perf_counter()
        built[edition] = _build(edition)
        timings[edition] = round(time.perf_counter() - start, 1)
    BUILD.mkdir(parents=True, exist_ok=True)
    (BUILD / "timings.json").write_text(json.dumps(timings) + "\n")
    return built


@pytest.fixture(scope="module")
def class_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A graded folder with report.html, from files rejected before running (nothing executes)."""
    from scripts.grading.grade import grade

    inbox = tmp_path_factory.mktemp("inbox")
    (inbox / "empty.ipynb").write_text("")
    (inbox / "broken.ipynb").write_text("{")
    (inbox / HOSTILE).write_text("[]")
    out = tmp_path_factory.mktemp("graded")
    grade("00", [inbox], out, sandboxed=False)
    return out


# --- reading built HTML --------------------------------------------------------------------------


class _Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key) and (key == "id" or tag == "a"):
                self.ids.add(str(values[key]))
        for key in ("href", "src"):
            if values.get(key) and tag in ("a", "link", "img", "script", "iframe", "source"):
                self.refs.append((tag, str(values[key])))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@functools.cache
def _parse(path: Path) -> _Parsed:
    parsed = _Parsed()
    parsed.feed(path.read_text(encoding="utf-8"))
    return parsed


def _squash(text: str) -> str:
    return " ".join(text.split())


def _readable(path: Path) -> str:
    """What a reader can see or download in one built file, whitespace squashed."""
    if path.suffix == ".html":
        return _squash(html.unescape("".join(_parse(path).text)))
    if path.suffix == ".ipynb":
        notebook = nbformat.read(path, as_version=4)
        parts = [cell.source for cell in notebook.cells]
        parts += [json.dumps(out, ensure_ascii=False) for cell in notebook.cells for out in cell.get("outputs", [])]
        return _squash("\n".join(parts))
    return _squash(path.read_text(encoding="utf-8", errors="replace"))


def _solution_lines() -> dict[str, list[str]]:
    """Per lab, the lines only its reference solution has: solution regions and held-out cells."""
    found = {}
    for lab in LABS:
        solution = nbformat.read(REPO / "solutions" / f"{lab}.ipynb", as_version=4)
        student = _squash("\n".join(cell.source for cell in nbformat.read(REPO / "labs" / f"{lab}.ipynb", 4).cells))
        lines = []
        for cell in solution.cells:
            regions = SOLUTION_REGION.findall(cell.source)
            if "lab-hidden" in cell.metadata.get("tags", []):
                regions.append(cell.source)
            for region in regions:
                for line in region.splitlines():
                    line = _squash(line)
                    if len(line) >= 16 and not line.startswith("#") and line not in student and line not in TAUGHT:
                        lines.append(line)
        assert lines, f"{lab}: no solution line found; did the markers change?"
        found[lab] = lines
    return found


def _published(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.suffix in (".html", ".ipynb", ".js", ".txt", ".md")]


# --- offline checks ------------------------------------------------------------------------------


def test_strict_build_produces_lab_and_chapter_pages(sites: dict[str, Path]) -> None:
    html_root = sites["student"]
    assert (html_root / "index.html").is_file()
    assert not (html_root / "reports").exists(), "a notebook was executed and failed during the build"
    home = (html_root / "book" / "index.html").read_text()
    for lab in LABS:
        page, chapter = html_root / "labs" / f"{lab}.html", html_root / "book" / f"{lab}.html"
        assert page.is_file() and chapter.is_file()
        assert f'href="../labs/{lab}.html"' in home, f"{lab} is missing from the navigation"
        text = page.read_text()
        assert "is not done yet" in text and "BEGIN SOLUTION" not in text
        assert not re.search(r"Traceback|NotImplementedError: Exercise", text), "lab pages must show no outputs"


def test_student_edition_holds_no_solution(sites: dict[str, Path]) -> None:
    root = sites["student"]
    texts = {path: _readable(path) for path in _published(root) if "_static" not in path.parts}
    downloads = sorted((root / "_sources" / "labs").glob("*.ipynb"))
    assert [p.stem for p in downloads] == LABS, "every lab is downloadable"
    assert not list(root.rglob("solutions")), "no solutions folder is published"
    assert not (root / "_instructors").exists() and not (root / "book" / "instructors.html").exists()
    for lab, lines in _solution_lines().items():
        for path, text in texts.items():
            leaked = [line for line in lines if line in text]
            assert not leaked, f"{path.relative_to(root)} shows solution lines of {lab}: {leaked[:3]}"
    for path, text in texts.items():
        assert "BEGIN SOLUTION" not in text, path
    for lab in LABS:
        page = texts[root / "labs" / f"{lab}.html"]
        assert "is not done yet" in page, f"{lab}: the exercise stubs are shown"
        notebook = nbformat.read(root / "_sources" / "labs" / f"{lab}.ipynb", as_version=4)
        assert not any(cell.get("outputs") for cell in notebook.cells), f"{lab}: the download has no outputs"


def test_instructor_edition_adds_solutions_outputs_grading_tables_and_guide(sites: dict[str, Path]) -> None:
    root = sites["instructors"]
    for lab, lines in _solution_lines().items():
        page = _readable(root / "solutions" / f"{lab}.html")
        assert all(line in page for line in lines if "BEGIN" not in line), f"{lab}: solution code is shown"
        assert re.search(r"✓ \[\d\d\.\d-[a-z]\]", page), f"{lab}: the stored check outputs are shown"
        assert (root / "_sources" / "solutions" / f"{lab}.ipynb").is_file()
        assert (root / "labs" / f"{lab}.html").is_file(), "the student pages are there too"
    assert list((root / "_images").glob("*.png")), "stored figures of the solutions are rendered"
    grading = _readable(root / "_instructors" / "grading.html")
    for manifest, _ in book_editions.manifests():
        assert f"Lab {manifest['lab']}: {manifest['notebook']} ({manifest['max_points']:g} points)" in grading
    assert "ex1-check/a 00.1 hardest segment answer hardest_slice" in grading
    assert "Cell roles" in _readable(root / "book" / "instructors.html")
    assert "(instructor edition)" in _readable(root / "book" / "index.html")


@pytest.mark.parametrize("edition", ["student", "instructors"])
def test_internal_links_and_anchors_resolve(sites: dict[str, Path], edition: str) -> None:
    root = sites[edition]
    broken = []
    pages = sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)
    for page in pages:
        for tag, ref in _parse(page).refs:
            if re.match(r"[a-z][a-z0-9+.-]*:", ref) or ref.startswith("//"):
                continue  # external or data: (the browser test fails any request that leaves the machine)
            target, fragment = urldefrag(ref)
            path = urlsplit(target).path
            resolved = (page.parent / unquote(path)).resolve() if path else page
            if resolved.is_dir():
                resolved = resolved / "index.html"
            if not resolved.is_file() or root.resolve() not in resolved.parents:
                broken.append(f"{page.relative_to(root)}: <{tag}> {ref} (no file)")
            elif fragment and resolved.suffix == ".html" and unquote(fragment) not in _parse(resolved).ids:
                broken.append(f"{page.relative_to(root)}: <{tag}> {ref} (no anchor)")
    assert len(pages) > 10 and not broken, "\n".join(broken[:30])


# --- browser -------------------------------------------------------------------------------------


class _Quiet(SimpleHTTPRequestHandler):
    # A notebook is JSON: the browser shows it in the tab the download button opens.
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".ipynb": "application/json"}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "max-age=600")  # the theme's scripts are fetched once
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a browser closing a connection early (favicon, a closed tab) is not a failure


class Served:
    """A folder served over HTTP from 127.0.0.1 on a free port, by a thread."""

    def __init__(self, folder: Path) -> None:
        self.server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def servers(sites: dict[str, Path], class_report: Path) -> Iterator[dict[str, Served]]:
    started: dict[str, Served] = {}
    try:
        for name, folder in {**sites, "report": class_report}.items():
            started[name] = Served(folder)
        yield started
    finally:
        for served in started.values():
            served.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium whose every request to a host other than 127.0.0.1 goes to a proxy that is a
    bound but never listening local port: refused (ERR_PROXY_CONNECTION_FAILED), whatever the
    host or scheme, without pausing each request for a route handler (which cost 65 % more CPU
    per page). The tests still see every request (:class:`Visit`)."""
    executable = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not executable:
        pytest.fail("the browser tests need chromium: install the Debian package 'chromium' (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with socket.socket() as closed, sync_playwright() as playwright:
        closed.bind(("127.0.0.1", 0))  # held, never listened on: connections to it are refused
        proxy = {"server": f"http://127.0.0.1:{closed.getsockname()[1]}", "bypass": "127.0.0.1"}
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, proxy=proxy)
        try:
            yield launched
        finally:
            launched.close()


LOCAL = re.compile(r"^(http://127\.0\.0\.1[:/]|data:|blob:|about:)")


class Visit:
    """A browser context that records every request not to 127.0.0.1 (the browser refuses them,
    see :func:`browser`) and every console error."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", lambda request: LOCAL.match(request.url) or self.blocked.append(request.url))
        self.context.on("page", self._watch)

    def _watch(self, page: Any) -> None:
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"{page.url}: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))

    def open(self, url: str, *, wait: str = "load", page: Any = None) -> Any:
        page = page or self.context.new_page()
        page.goto(url, wait_until=wait)
        return page

    def assert_clean(self) -> None:
        assert not self.blocked, f"pages requested other hosts (the browser refused them): {sorted(set(self.blocked))[:10]}"
        assert not self.errors, f"console errors: {self.errors[:10]}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any) -> Iterator[Visit]:
    opened = Visit(browser)
    try:
        yield opened
    finally:
        opened.close()


BROKEN_IMAGES = "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


SHOT_TYPES = {
    "student": {
        "book/index.html": "home",
        "book/01-staging-vs-production.html": "chapter",
        "labs/01-staging-vs-production.html": "lab",
        "search.html": "search",
    },
    "instructors": {
        "solutions/00-first-model.html": "solution",
        "_instructors/grading.html": "grading",
        "book/instructors.html": "guide",
    },
}


def _download(visit: Visit, page: Any, relative: str, *, click: bool) -> None:
    """The page's download button serves its notebook: valid, a lab's with stubs, a solution's with solutions."""
    page.click("button[aria-label='Download this page']")
    button = page.locator("a.btn-download-source-button")
    assert button.is_visible() and (button.get_attribute("href") or "").endswith(".ipynb"), relative
    if click:  # the button itself, in the browser: it opens the notebook in a new tab
        with visit.context.expect_event("response", lambda r: r.url.endswith(".ipynb")) as answered:
            with visit.context.expect_page() as opened:
                button.click()
        body = answered.value.body()
        opened.value.close()
    else:  # the address the button holds, fetched by the browser's request context (faster)
        response = page.request.get(button.evaluate("a => a.href"))
        assert response.ok, relative
        body = response.body()
    notebook = nbformat.reads(body.decode("utf-8"), as_version=4)
    nbformat.validate(notebook)
    text = "\n".join(cell.source for cell in notebook.cells)
    assert ("BEGIN SOLUTION" in text) == relative.startswith("solutions/"), relative
    if relative.startswith("labs/"):
        assert "is not done yet" in text, relative


@pytest.mark.parametrize("edition", ["student", "instructors"])
def test_every_page_loads_offline_with_no_console_error_and_download_buttons_work(
    sites: dict[str, Path], servers: dict[str, Served], visit: Visit, edition: str
) -> None:
    root = sites[edition]
    images = downloads = 0
    page = visit.context.new_page()  # one tab, page after page: a new tab per page costs more
    for path in sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts):
        relative = path.relative_to(root).as_posix()
        visit.open(servers[edition].url + relative, page=page)
        if relative == "index.html":  # a redirect to the first page
            page.wait_for_url(re.compile(r"book/index\.html$"))
            page.wait_for_load_state()
        assert page.evaluate(BROKEN_IMAGES) == [], f"{relative}: images that did not render"
        images += page.evaluate("document.images.length")
        if relative in SHOT_TYPES[edition]:
            _shot(page, f"{edition}-{SHOT_TYPES[edition][relative]}")
        # Each lab's (and in the instructor edition each solution's) download button, on the way.
        if relative.startswith("solutions/" if edition == "instructors" else "labs/"):
            _download(visit, page, relative, click=not downloads)
            downloads += 1
        visit.assert_clean()
    assert downloads == len(LABS), "a download button was checked on every lab (solution) page"
    assert edition == "student" or images > 0, "the solutions' figures are on the instructor pages"


def test_a_request_to_another_host_is_refused_and_recorded(servers: dict[str, Served], visit: Visit) -> None:
    """What the other browser tests rely on: a page's request to any host but 127.0.0.1, by name,
    by address or over https, never reaches the network and is recorded (so it fails the test)."""
    outside = ["http://example.com/a.png", "http://93.184.216.34/b.png", "https://pypi.org/c.js"]
    page = visit.open(servers["student"].url + "search.html")
    failed: dict[str, str] = {}
    page.on("requestfailed", lambda request: failed.setdefault(request.url, request.failure or ""))
    page.evaluate("urls => urls.forEach(url => fetch(url).catch(() => null))", outside)
    deadline = time.monotonic() + 10
    while len(failed) < len(outside) and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert failed == dict.fromkeys(outside, "net::ERR_PROXY_CONNECTION_FAILED"), failed
    assert sorted(visit.blocked) == sorted(outside)
    with pytest.raises(AssertionError, match="other hosts"):
        visit.assert_clean()


def test_navigation_reaches_every_lab_and_chapter(servers: dict[str, Served], visit: Visit) -> None:
    base = servers["student"].url
    page = visit.open(base)  # index.html redirects to the first page
    page.wait_for_url(re.compile(r"book/index\.html$"))
    links = page.eval_on_selector_all("nav.bd-docs-nav a.reference", "els => els.map(e => e.href)")
    reached = {urlsplit(link).path.lstrip("/") for link in links}
    missing = {f"labs/{lab}.html" for lab in LABS} | {
        f"book/{c}.html" for c in CHAPTERS if c not in ("index", "instructors")
    }
    assert not missing - reached, f"not in the navigation: {sorted(missing - reached)}"
    page.click("nav.bd-docs-nav a[href$='labs/01-staging-vs-production.html']")
    page.wait_for_url(re.compile(r"labs/01-staging-vs-production\.html$"))
    assert "Lab 01" in page.title() or "01" in page.inner_text("h1")
    visit.assert_clean()


def test_search_for_alias_finds_lab_01(servers: dict[str, Served], visit: Visit) -> None:
    page = visit.open(servers["student"].url + "search.html?q=alias")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    found = page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(e => e.href)")
    assert any("labs/01-staging-vs-production.html" in link for link in found), found
    visit.assert_clean()


def test_class_report_renders_offline_and_escapes_names(servers: dict[str, Served], visit: Visit) -> None:
    page = visit.open(servers["report"].url + "report.html")
    assert page.evaluate(BROKEN_IMAGES) == [] and page.evaluate("document.images.length") == 1
    assert page.locator("main b:text('bold')").count() == 0, "a submission's name must not become markup"
    assert HOSTILE in page.inner_text("main")
    links = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
    assert len(links) == 3
    for link in links:
        response = page.request.get(link)
        assert response.ok and "# Feedback" in response.text(), link
    _shot(page, "class-report")
    visit.assert_clean()


# --- accessibility -------------------------------------------------------------------------------

# axe-core's rules, run inside the page (axe.min.js as shipped by the pinned axe-playwright-python
# wheel; axe-core is MPL-2.0). Structure on one page of every type; colour contrast, the costly
# rule (seconds per long page), on pages that hold every kind of text: prose, code, math, tables.
AXE_STRUCTURE = [
    "heading-order",
    "empty-heading",
    "page-has-heading-one",
    "image-alt",
    "document-title",
    "html-has-lang",
    "link-name",
    "button-name",
    "label",
]
A11Y_PAGES = {
    "student": {
        "book/index.html": True,
        "book/02-quality-gates.html": True,
        "labs/00-first-model.html": False,
        "search.html": False,
    },
    "instructors": {
        "solutions/00-first-model.html": False,
        "_instructors/grading.html": False,
        "book/instructors.html": False,
    },
    "report": {"report.html": True},
}


def _axe(page: Any, rules: list[str]) -> list[dict[str, Any]]:
    import axe_playwright_python

    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate((Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text(encoding="utf-8"))
    return page.evaluate(
        """async rules => (await axe.run(document, {runOnly: {type: 'rule', values: rules}})).violations
            .map(v => ({rule: v.id, help: v.help, where: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))""",
        rules,
    )


@pytest.mark.parametrize("site", ["student", "instructors", "report"])
def test_pages_pass_axe_heading_order_alt_text_and_contrast(
    servers: dict[str, Served], browser: Any, site: str
) -> None:
    context = browser.new_context(bypass_csp=True)  # the report's CSP forbids the injected script
    try:
        page = context.new_page()
        found = {}
        for relative, contrast in A11Y_PAGES[site].items():
            page.goto(servers[site].url + relative)
            violations = _axe(page, AXE_STRUCTURE + (["color-contrast"] if contrast else []))
            if violations:
                found[relative] = violations
        assert not found, json.dumps(found, indent=1)
    finally:
        context.close()


PRINT_LAYOUT = """() => Object.fromEntries(Object.entries({header: '.bd-header', primary: '#pst-primary-sidebar',
    secondary: '#pst-secondary-sidebar', article: 'article.bd-article'}).map(([name, selector]) => {
    const element = document.querySelector(selector);
    return [name, element ? Math.round(element.getBoundingClientRect().width) : null]; }))"""


@pytest.mark.parametrize(
    ("site", "relative"),
    [
        ("student", "book/02-quality-gates.html"),
        ("student", "labs/00-first-model.html"),
        ("instructors", "solutions/00-first-model.html"),
    ],
)
def test_pages_print_without_navigation_and_with_their_math(
    servers: dict[str, Served], visit: Visit, site: str, relative: str
) -> None:
    page = visit.open(servers[site].url + relative)
    if relative == "book/02-quality-gates.html":  # the formulas are typeset by the local MathJax
        page.wait_for_selector("mjx-container", timeout=20_000)
    page.emulate_media(media="print")
    layout = page.evaluate(PRINT_LAYOUT)
    assert layout["header"] == layout["primary"] == layout["secondary"] == 0, f"navigation printed: {layout}"
    assert layout["article"] >= 0.7 * page.viewport_size["width"], f"the text gets the page's width: {layout}"
    target = BUILD / "print" / (relative.replace("/", "-").removesuffix(".html") + ".pdf")
    target.parent.mkdir(parents=True, exist_ok=True)
    page.pdf(path=str(target))
    assert target.read_bytes()[:5] == b"%PDF-" and target.stat().st_size > 10_000
    visit.assert_clean()
