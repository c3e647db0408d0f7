"""The built site, read in a real browser: every page of the table of contents opened in headless
Chromium (driven by Playwright) and checked as a reader would meet it.

A page fails on: an internal link to a file that is not in the site, or to an anchor that is not on
its target page; an image that does not load; a missing stylesheet, script or other file of the
site; a script error; a Python traceback or error output; math that MathJax could not typeset; and
content wider than its column at a desktop width (1280x900). Wide tables or equations inside their
own scrolling box are fine: what is measured is the main column itself and the page.
Screenshots of the introduction and of one experiment page are saved under the build folder.

The book is built once per session (conftest `built_book`, which test_book checks too), into a
temporary folder, as `make html` builds it (`CCS_SITE_HTML=_build/html` checks a site already built
instead). The site is served over HTTP on 127.0.0.1; any other address is blocked (the book renders
offline).

Without a browser these tests fail, saying how to install one; `CCS_SKIP_BROWSER=1` skips them.
Chromium is looked up as `$CCS_CHROMIUM`, then `chromium`, `chromium-browser`, `google-chrome` on
PATH, then Playwright's own (`playwright install chromium`).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from ccs import pipeline

ROOT = pipeline.ROOT
VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOTS = {
    "intro": "book/intro.html",
    "pruning": "book/runs/ccs-tiny/pruning.html",
    "model_card": "book/runs/ccs-tiny/model_card.html",
}
# The main column of the sphinx-book-theme page, outermost first (pydata-sphinx-theme markup).
COLUMNS = ("#main-content", ".bd-article-container", ".bd-article")
# Script errors that come from the toolchain, not from this book, each with its reason.
KNOWN_SCRIPT_ERRORS = {
    "Identifier 'THEBE_JS_URL' has already been declared": "Sphinx 7.4 writes the inline scripts that extensions "
    "add after the builder started twice (added as None, re-read as '': its de-duplication misses them), here sphinx-thebe's "
    "`const` config; the first one works, so nothing is lost",
}
INSTALL = (
    "install a browser for the site tests: `apt-get install chromium` (Debian/Ubuntu; or "
    "`playwright install chromium`) and `pip install -e '.[test]'` (Playwright); "
    "or set CCS_SKIP_BROWSER=1 to skip them"
)


def toc_pages() -> list[str]:
    """The html page of every file of _toc.yml, relative to the site root."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return [f"{Path(f).with_suffix('')}.html" for f in files]


# --------------------------------------------------------------------------------------------------
# Fixtures: the browser (checked first, so a missing one fails in a second), the build, the server.


@pytest.fixture(scope="module")
def chromium():
    """Playwright's Chromium, launched headless; fails with install instructions when absent."""
    if os.environ.get("CCS_SKIP_BROWSER", "") not in ("", "0"):
        pytest.skip("CCS_SKIP_BROWSER is set: the site is not checked in a browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright is not installed: {INSTALL}", pytrace=False)
    candidates = [os.environ.get("CCS_CHROMIUM")] + [
        shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
    ]
    executable = next((c for c in candidates if c), None)
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, headless=True)
        except Exception as exc:  # no executable, or one that does not start
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            pytest.fail(f"no usable Chromium ({executable or 'none on PATH'}: {first}): {INSTALL}", pytrace=False)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(request) -> Path:
    """The book built strictly (warnings are errors), as `make html` builds it, into a tmp folder (the
    session's `built_book`); or, with CCS_SITE_HTML=_build/html, a site already built (by `make book`),
    checked as it is."""
    if os.environ.get("CCS_SITE_HTML"):
        html = Path(os.environ["CCS_SITE_HTML"]).resolve()
        assert (html / "index.html").is_file(), f"CCS_SITE_HTML={html}: no index.html there"
        return html
    return request.getfixturevalue("built_book")


@pytest.fixture(scope="module")
def server(site):
    """The site over HTTP on 127.0.0.1 (as a host would serve it), on a free port."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


# --------------------------------------------------------------------------------------------------
# One visit of every page, collecting what the tests below check.

MEASURE = """async ({columns}) => {
  // Images: lazy ones are made eager, then every image has loaded or failed (5 s at most).
  const imgs = Array.from(document.images);
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  await Promise.race([
    Promise.all(imgs.map(i => i.complete ? null
                         : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); }))),
    new Promise(r => setTimeout(r, 5000))]);
  // Math: wait for MathJax's first typesetting (it changes widths).
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await Promise.race([MathJax.startup.promise, new Promise(r => setTimeout(r, 10000))]);
  }
  const describe = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
      + (typeof e.className === 'string' && e.className.trim()
         ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
  const text = e => (e.innerText || e.textContent || '').trim();
  const article = document.querySelector('.bd-article') || document.body;
  const ids = Array.from(document.querySelectorAll('[id]')).map(e => e.id)
      .concat(Array.from(document.querySelectorAll('a[name]')).map(e => e.getAttribute('name')));
  const links = Array.from(document.querySelectorAll('a[href]'))
      .map(a => ({href: a.href, raw: a.getAttribute('href'), text: text(a).slice(0, 60)}));
  const images = imgs.map(i => ({src: i.currentSrc || i.src, alt: i.alt, complete: i.complete,
                                  naturalWidth: i.naturalWidth, inArticle: article.contains(i)}));
  const errorOutputs = Array.from(article.querySelectorAll(
      '.output_error, .output.traceback, .output.stderr'))
      .map(e => ({element: describe(e), text: text(e).slice(0, 300),
                  always: !e.classList.contains('stderr')}));
  const mathErrors = Array.from(document.querySelectorAll('mjx-merror, .MathJax_Error, [data-mjx-error]'))
      .map(e => (e.getAttribute('data-mjx-error') || text(e)).slice(0, 200));
  const tracebacks = [];
  const body = text(article);
  let at = body.indexOf('Traceback (most recent call last)');
  while (at >= 0 && tracebacks.length < 5) {
    tracebacks.push(body.slice(at, at + 300));
    at = body.indexOf('Traceback (most recent call last)', at + 1);
  }
  const columnsOut = [];
  for (const sel of columns) {
    const col = document.querySelector(sel);
    if (!col) continue;
    const entry = {selector: sel, scrollWidth: col.scrollWidth, clientWidth: col.clientWidth,
                   overflowing: []};
    if (col.scrollWidth > col.clientWidth + 1) {
      // Name the widest descendants sticking out of the column on the right.
      const right = col.getBoundingClientRect().left + col.clientWidth;
      const out = [];
      // Content clipped by a scrolling box inside the column (a wide table or code block that
      // scrolls on its own) is not what makes the column wide.
      const clipped = e => {
        for (let a = e.parentElement; a && a !== col; a = a.parentElement) {
          if (getComputedStyle(a).overflowX !== 'visible') return true;
        }
        return false;
      };
      for (const e of col.querySelectorAll('*')) {
        const r = e.getBoundingClientRect();
        if (r.right > right + 1 && r.width > 0 && !clipped(e)) out.push({e, r});
      }
      // Outermost offenders only: drop those inside another offender.
      entry.overflowing = out.filter(o => !out.some(p => p !== o && p.e.contains(o.e)))
        .slice(0, 5).map(o => ({element: describe(o.e), width: Math.round(o.r.width),
                                overshoot: Math.round(o.r.right - right),
                                text: text(o.e).slice(0, 80)}));
    }
    columnsOut.push(entry);
  }
  // Printed output that scrolls sideways inside its own box (hidden from the column check).
  const scrollingOutputs = Array.from(document.querySelectorAll('div.cell_output pre'))
      .filter(e => e.scrollWidth > e.clientWidth + 1)
      .map(e => ({width: e.scrollWidth, box: e.clientWidth, text: text(e).slice(0, 80)}));
  const doc = document.documentElement;
  return {title: document.title, ids, links, images, errorOutputs, mathErrors, tracebacks,
          columns: columnsOut, scrollingOutputs,
          page: {scrollWidth: doc.scrollWidth, innerWidth: window.innerWidth}};
}"""


def _script_error(exc, server: str) -> str:
    """The message of an uncaught script error, with the site file it came from when known."""
    message = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0][:300]
    stack = getattr(exc, "stack", None) or ""
    where = next((line.strip() for line in stack.splitlines()[1:] if server in line), "")
    return f"{message} ({where.replace(server, '')})" if where else message


@pytest.fixture(scope="module")
def visits(chromium, site, server):
    """Every toc page opened once at a desktop width: {page: what MEASURE found, plus the script
    errors and the files of the site that failed to load}. Saves the screenshots on the way."""
    context = chromium.new_context(viewport=VIEWPORT)

    def route(r):  # only the site itself: the book must render offline
        if r.request.url.startswith(server):
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    shots = site / "_screenshots"
    shots.mkdir(exist_ok=True)
    found = {}
    try:
        for rel in toc_pages():
            page = context.new_page()
            page.set_default_timeout(30_000)
            script_errors, missing = [], []
            page.on("pageerror", lambda exc, out=script_errors: out.append(_script_error(exc, server)))
            page.on(
                "requestfailed",
                lambda req, out=missing: out.append(f"{req.url} ({req.failure})") if req.url.startswith(server) else None,
            )
            page.on(
                "response",
                lambda resp, out=missing: (
                    out.append(f"{resp.url} (HTTP {resp.status})") if resp.status >= 400 and resp.url.startswith(server) else None
                ),
            )
            response = page.goto(server + rel, wait_until="load")
            assert response is not None and response.ok, f"{rel}: {response and response.status}"
            data = page.evaluate(MEASURE, {"columns": list(COLUMNS)})
            data.update(script_errors=script_errors, missing=missing)
            found[rel] = data
            for name, shot_rel in SCREENSHOTS.items():
                if shot_rel == rel:
                    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            page.close()
    finally:
        context.close()
    return found


@pytest.fixture(scope="module")
def report(request):
    """Prints to the terminal even when pytest captures output."""
    capman = request.config.pluginmanager.getplugin("capturemanager")

    def say(message):
        with capman.global_and_fixture_disabled():
            print(message)

    return say


# --------------------------------------------------------------------------------------------------
# Static ids of pages that were not visited (genindex, search, ...), for anchors pointing there.


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])


@functools.lru_cache(maxsize=None)
def _static_ids(path: Path) -> frozenset:
    parser = _Ids()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


def _check(problems: dict[str, list[str]], title: str) -> None:
    """Fails with every problem, page by page."""
    text = "\n".join(f"{page}:\n  " + "\n  ".join(items) for page, items in problems.items() if items)
    if text:
        pytest.fail(f"{title}:\n{text}", pytrace=False)


# --------------------------------------------------------------------------------------------------
# The checks.


def test_every_toc_page_is_visited(visits, site):
    pages = toc_pages()
    assert len(pages) >= 3 and set(visits) == set(pages)
    for rel in pages:
        assert visits[rel]["title"], f"{rel} has no title"
    assert (site / "index.html").is_file()


def test_internal_links_resolve(visits, site, server):
    problems = {}
    for rel, data in visits.items():
        items = problems.setdefault(rel, [])
        for link in data["links"]:
            url = urlsplit(link["href"])
            if not link["href"].startswith(server):
                continue  # another site, mailto:, javascript:: not the book's to check
            path = unquote(url.path)[len(urlsplit(server).path) :]
            target = site / path
            if path == "" or path.endswith("/") or target.is_dir():
                target = target / "index.html"
            label = f'<a href="{link["raw"]}"> ({link["text"]!r})'
            if not target.is_file():
                items.append(f"{label}: no file {target.relative_to(site)} in the site")
                continue
            anchor = unquote(url.fragment)
            if not anchor or target.suffix != ".html":
                continue
            target_rel = target.relative_to(site).as_posix()
            ids = set(visits[target_rel]["ids"]) if target_rel in visits else _static_ids(target)
            if anchor not in ids:
                items.append(f"{label}: no id {anchor!r} on {target_rel}")
    _check(problems, "broken internal links")


def test_images_and_site_files_load(visits):
    problems = {}
    for rel, data in visits.items():
        items = problems.setdefault(rel, [])
        for img in data["images"]:
            if not img["naturalWidth"]:
                items.append(
                    f"<img src={img['src']!r} alt={img['alt'][:60]!r}> did not load (complete={img['complete']}, naturalWidth=0)"
                )
        items += [f"missing file of the site: {m}" for m in data["missing"]]
    _check(problems, "missing images or files")


def test_every_figure_has_alt_text(visits):
    """Every image of a page's content says in words what it shows: not empty, not a file name
    (what a figure pasted without a description gets)."""
    problems = {
        rel: [
            f"<img src={img['src'].rsplit('/', 1)[-1]!r}> alt={img['alt'][:60]!r}"
            for img in data["images"]
            if img["inArticle"] and (not img["alt"].strip() or re.search(r"[/\\]|\.(png|jpe?g|svg|gif)$", img["alt"]))
        ]
        for rel, data in visits.items()
    }
    _check(problems, "images without alt text")


def test_no_tracebacks_errors_or_script_errors(visits):
    problems = {}
    for rel, data in visits.items():
        items = problems.setdefault(rel, [])
        items += [f"Python traceback on the page: {t!r}" for t in data["tracebacks"]]
        for out in data["errorOutputs"]:
            if out["always"] or "Error" in out["text"]:  # stderr also holds harmless warnings
                items.append(f"error output {out['element']}: {out['text']!r}")
        items += [f"math MathJax could not typeset: {m!r}" for m in data["mathErrors"]]
        items += [f"script error: {e}" for e in data["script_errors"] if not any(known in e for known in KNOWN_SCRIPT_ERRORS)]
    _check(problems, "errors on pages")


def test_no_horizontal_overflow_at_desktop_width(visits):
    problems = {}
    for rel, data in visits.items():
        items = problems.setdefault(rel, [])
        columns = data["columns"]
        if not columns:
            items.append(f"none of the main-column elements {COLUMNS} is on the page")
        for col in columns:
            if col["scrollWidth"] > col["clientWidth"] + 1:
                culprits = (
                    "; ".join(
                        f"{o['element']} {o['width']}px wide, {o['overshoot']}px past the column ({o['text']!r})"
                        for o in col["overflowing"]
                    )
                    or "?"
                )
                items.append(
                    f"{col['selector']} overflows: scrollWidth {col['scrollWidth']}"
                    f" > clientWidth {col['clientWidth']}: {culprits}"
                )
        page = data["page"]
        if page["scrollWidth"] > page["innerWidth"]:
            items.append(
                f"the page scrolls sideways: document scrollWidth {page['scrollWidth']} > innerWidth {page['innerWidth']}"
            )
    _check(problems, f"horizontal overflow at {VIEWPORT['width']}x{VIEWPORT['height']}")


def test_printed_outputs_wrap_inside_their_boxes(visits):
    """A long printed line (a verdict, a note) wraps (_css/outputs.css) instead of hiding its end
    behind a sideways scroll bar."""
    problems = {
        rel: [f"output box {o['box']}px wide scrolls to {o['width']}px ({o['text']!r})" for o in data["scrollingOutputs"]]
        for rel, data in visits.items()
    }
    _check(problems, "printed outputs scrolling sideways")


def test_screenshots_saved(visits, site, report):
    shots = [site / "_screenshots" / f"{name}.png" for name in SCREENSHOTS]
    for shot in shots:
        assert shot.is_file() and shot.stat().st_size > 10_000, shot
    report(f"\nsite screenshots: {', '.join(str(s) for s in shots)}")


def test_notebook_pages_offer_launch_and_download(site):
    """_config.yml's Binder and Colab buttons (only once the repository's URL is set: hidden while it
    is empty) and the download button, on every notebook page; prose pages offer their source.
    Static HTML: runs without a browser too."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    published = bool(config["repository"]["url"])
    repo = urlsplit(config["repository"]["url"]).path.strip("/")
    branch = config["repository"]["branch"]
    for rel in toc_pages():
        html = (site / rel).read_text()
        source = Path(rel).with_suffix(".ipynb")
        if (ROOT / source).is_file():
            if published:
                assert f"https://mybinder.org/v2/gh/{repo}/{branch}?urlpath=" in html, rel
                assert (f"https://colab.research.google.com/github/{repo}/blob/{branch}/{source.as_posix()}") in html, rel
            else:  # no button to a placeholder
                assert "mybinder.org" not in html and "colab.research.google.com" not in html, rel
            download = site / "_sources" / source
            assert f'_sources/{source.as_posix()}"' in html, f"{rel}: no .ipynb download"
            assert json.loads(download.read_text())["cells"], download
        else:
            md = site / "_sources" / Path(rel).with_suffix(".md")
            assert md.is_file() and f'_sources/{md.relative_to(site / "_sources").as_posix()}"' in html, (
                f"{rel}: no source download"
            )
