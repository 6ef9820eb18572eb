"""The rendered book, tested in a real browser (issue 8): headless Chromium driven by Playwright.

For every page in _toc.yml: it loads without console errors, MathJax has typeset the math, every image
has loaded, the Colab button opens the matching notebook, internal links resolve, and nothing overflows
horizontally at a phone width (375 px) or at a desktop width. Issue 12 adds: no raw Markdown or MyST in the
visible text (a table left as "|---|", a role left as "{eq}"), no code cell that needs sideways scrolling at
1280 px (notebook code is formatted to 79 columns), equation numbers of the form (chapter.n) in the numbered
chapters, and alt text on every image (not the file name Sphinx puts there by default). A full-page
screenshot of each page at desktop width goes to artifacts/screenshots/<page>.png (not committed) for a
person to look at.

How it runs:
- The book is the session's build (tests/book_build.py `built_book`; VAELAB_BOOK_HTML reuses a built html folder),
  served by an in-process threaded HTTP server on 127.0.0.1 and a free port.
- Chromium is Debian's `chromium` (scripts/install_chromium.sh installs it; `$CHROMIUM` names another
  binary), launched by Playwright through `executable_path` with the flags in book_server.CHROMIUM_FLAGS and
  a fresh user-data dir. Playwright never downloads a browser here. The tests skip, saying why, only when
  Playwright is not installed or no Chromium can be found or launched.
- No internet: every request leaving 127.0.0.1 is intercepted. Requests for MathJax 3 (the pages load
  https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js, then its fonts and extensions from the same
  place) are answered from an offline copy of the same MathJax 3 (book_server.fetch_mathjax: npm's `mathjax@3`,
  else the files of PyPI's django-static-mathjax), so the math really is typeset by MathJax. Every other
  external request is blocked and counts as an error: a page must not need the network to show itself
  (a reader offline, a CDN down). Links to other sites (Colab, Binder, GitHub) are only checked as addresses.
- Console errors: none are tolerated, and so no filter is applied. A failed request to 127.0.0.1 (any status
  >= 400 or a network failure) is an error too.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from book_build import ARTIFACTS, ROOT, require_book, toc_files, toc_source
from book_server import CHROMIUM_FLAGS, MATHJAX_CDN_PREFIX, fetch_mathjax, find_chromium, mathjax_version, serve

pytestmark = pytest.mark.browser

PAGES = toc_files()
NOTEBOOK_PAGES = [p for p in PAGES if (ROOT / (p + ".ipynb")).is_file()]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
SCREENSHOTS = ARTIFACTS / "screenshots"
TIMEOUT_MS = 60_000
IMAGE_FILE = re.compile(r"\.(png|jpe?g|svg|gif|webp)$", re.I)


@pytest.fixture(scope="module")
def built_book():
    return require_book()  # built at most once per session, shared with the other module


def _page_id(entry: str) -> str:
    return Path(entry).name


# ----------------------------------------------------------------------------------------------------------
# Browser and server


@dataclass
class Browser:
    context: object  # playwright BrowserContext (persistent: its own fresh user-data dir)
    base: str  # e.g. http://127.0.0.1:PORT/
    html: Path
    mathjax: Path | None
    mathjax_problem: str = ""
    blocked: list = field(default_factory=list)  # external URLs requested by the page being inspected


@pytest.fixture(scope="module")
def browser(built_book, tmp_path_factory):
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            'Playwright is not installed: pip install -e ".[browser]" (never `playwright install`: '
            "the tests use Debian's chromium, see scripts/install_chromium.sh)"
        )
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "no Chromium found (looked for $CHROMIUM, chromium, chromium-browser): run "
            "`bash scripts/install_chromium.sh` (apt-get install chromium) to run the browser tests"
        )

    mathjax = fetch_mathjax()
    problem = (
        ""
        if mathjax
        else (
            "no offline MathJax 3 (npm install mathjax@3 or pip download django-static-mathjax failed): "
            "run `python tests/book_server.py --fetch-mathjax` or set VAELAB_MATHJAX_DIR"
        )
    )

    with serve(built_book.html) as (base, _log):
        pw = sync_playwright().start()
        try:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")),
                executable_path=executable,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport=DESKTOP,
                offline=False,
            )
        except PlaywrightError as exc:
            pw.stop()
            pytest.skip(f"Chromium at {executable} could not be launched: {str(exc).splitlines()[0]}")
        state = Browser(
            context=context, base=base, html=Path(built_book.html), mathjax=mathjax, mathjax_problem=problem
        )

        def route(route):
            url = route.request.url
            if url.startswith(base):
                return route.continue_()
            if url.startswith(MATHJAX_CDN_PREFIX) and mathjax is not None:
                rel = urllib.parse.urlsplit(url[len(MATHJAX_CDN_PREFIX) :]).path
                local = (mathjax / rel).resolve()
                if local.is_file() and mathjax.resolve() in local.parents:
                    return route.fulfill(path=str(local))
                return route.fulfill(status=404, body=f"{rel} is not in the offline MathJax copy")
            state.blocked.append(url)
            return route.abort()

        context.route("**/*", route)
        try:
            yield state
        finally:
            context.close()
            pw.stop()


# ----------------------------------------------------------------------------------------------------------
# One inspection per page, shared by the checks below

JS_MATH = """async () => {
  await document.fonts.ready;
  const maths = [...document.querySelectorAll('.math')];
  const raw = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.trim().slice(0, 100));
  const errors = [...document.querySelectorAll('mjx-merror')]
      .map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 10);
  const leftovers = [];
  const root = document.querySelector('main') || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, text = node.textContent;
    if ((text.includes('$$') || text.includes('\\\\begin{'))
        && !node.parentElement.closest('pre, code, script, style, mjx-container, .highlight, .MathJax')) {
      leftovers.push(text.trim().slice(0, 120));
    }
  }
  // display equations wider than the text column (the reader must scroll inside them)
  const wide = [...document.querySelectorAll('mjx-container[display="true"]')]
      .filter(e => e.scrollWidth > e.clientWidth + 1)
      .map(e => `${(e.closest('.math') || {}).id || 'unlabelled'}: ${e.scrollWidth} px in ${e.clientWidth} px`);
  return {n_math: maths.length, n_typeset: document.querySelectorAll('mjx-container').length,
          raw, errors, leftovers, wide};
}"""

JS_WAIT_MATHJAX = """async () => {
  if (!window.MathJax || !window.MathJax.startup || !window.MathJax.startup.promise) return 'absent';
  await window.MathJax.startup.promise;
  return 'ok';
}"""

JS_IMAGES = """async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  await Promise.all(imgs.map(i => (i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; }))));
  return {n: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0))
                                      .map(i => i.getAttribute('src') || i.outerHTML.slice(0, 120))};
}"""

JS_OVERFLOW = """async () => {
  await document.fonts.ready;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  // after a resize the theme slides its sidebars (CSS transitions): measure the settled layout
  await Promise.all(document.getAnimations().map(a => a.finished.catch(() => null)));
  const de = document.documentElement, vw = de.clientWidth;
  const describe = el => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    if (typeof el.className === 'string' && el.className.trim()) s += '.' + el.className.trim().split(/\\s+/).join('.');
    const r = el.getBoundingClientRect();
    const text = (el.textContent || '').trim().slice(0, 60);
    return `${s} (${Math.round(r.left)} to ${Math.round(r.right)} px, content ${el.scrollWidth} px wide`
           + `${text ? ', "' + text + '"' : ''})`;
  };
  // What sticks out past the right edge: an element box, or content (a long word, an unbreakable code
  // literal) spilling out of its box. Boxes that scroll or clip their content contain it, and fixed
  // elements (the theme's off-canvas sidebars) never widen the page, so neither is counted.
  const spills = el => {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) return false;
    if (r.right > vw + 1) return true;
    return getComputedStyle(el).overflowX === 'visible' && r.left + el.scrollWidth > vw + 1;
  };
  const free = el => {
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.position === 'fixed') return false;
      if (a !== el && s.overflowX !== 'visible') return false;
    }
    return el.checkVisibility({visibilityProperty: true, opacityProperty: true});
  };
  const found = [...document.querySelectorAll('body *')].filter(el => spills(el) && free(el));
  // report the innermost offenders: drop an element when one of its descendants is listed
  const culprits = found.filter(el => !found.some(other => other !== el && el.contains(other))).map(describe);
  const scrollWidth = Math.max(de.scrollWidth, document.body.scrollWidth);
  return {viewport: vw, scrollWidth, culprits: culprits.slice(0, 8), n_culprits: culprits.length};
}"""

# Raw Markdown or MyST that reached the reader as text: a table parsed as a paragraph ("| a | b |" then
# "|---|", which smart quotes turn into "—|—"), a directive fence, a role, display math delimiters.
JS_RAW_MARKUP = r"""() => {
  const patterns = [/\|\s*-{3,}\s*\|/, /\|\s*—\s*\|/, /—\|—/, /:::/, /\{(eq|cite|doc|ref|numref|glue|glue:text)\}/,
                    /\$\$/, /^\s*```/m];
  const root = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const found = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, text = node.textContent;
    if (node.parentElement.closest('pre, code, script, style, mjx-container, .highlight, .MathJax, textarea')) continue;
    for (const p of patterns) {
      if (p.test(text)) { found.push(`${p}: "${text.trim().slice(0, 100)}"`); break; }
    }
  }
  return found.slice(0, 20);
}"""

# Code blocks (cell inputs and code in the text, solutions included) wider than their box at this width. Collapsed
# blocks (hide-input cells, dropdown solutions) are opened first, so they are measured as a reader who opens them
# sees them; call it after the screenshot.
JS_WIDE_CODE = """async () => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  document.querySelectorAll('.toggle-details__container, .dropdown .admonition-content, .toggle')
      .forEach(e => { e.style.display = ''; });
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const blocks = [...document.querySelectorAll('article .highlight pre')]
      .filter(pre => !pre.closest('.cell_output, .output'));
  const wide = blocks.filter(pre => pre.clientWidth > 0 && pre.scrollWidth > pre.clientWidth + 1).map(pre => {
    const longest = pre.textContent.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '');
    return `${pre.scrollWidth} px in ${pre.clientWidth} px, longest line (${longest.length} chars): `
           + longest.slice(0, 90);
  });
  return {n: blocks.length, n_measured: blocks.filter(pre => pre.clientWidth > 0).length, wide};
}"""

# Equation numbers as the page shows them, and the text of links to equations.
JS_EQUATIONS = """() => ({
  numbers: [...document.querySelectorAll('.math .eqno')]
      .map(e => (e.firstChild ? e.firstChild.textContent : '').trim()),
  refs: [...document.querySelectorAll('a[href*="#equation-"]')].filter(a => !a.classList.contains('headerlink'))
      .map(a => a.textContent.trim()),
})"""

# Every image in the article and its alt text; Sphinx writes the image's address as alt when none is given.
JS_ALT = """() => [...document.querySelectorAll('article.bd-article img, main img')].map(i => ({
  src: i.getAttribute('src') || '', alt: (i.getAttribute('alt') || '').trim(),
}))"""

JS_LINKS = """() => ({
  all: [...document.querySelectorAll('a[href]')].map(a => a.href),
  colab: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map(a => a.getAttribute('href')),
})"""


@dataclass
class Report:
    url: str
    status: int | None = None
    console_errors: list = field(default_factory=list)
    page_errors: list = field(default_factory=list)
    failed_local: list = field(default_factory=list)
    blocked: list = field(default_factory=list)
    mathjax: str = ""
    math: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    links: list = field(default_factory=list)
    colab: list = field(default_factory=list)
    overflow: dict = field(default_factory=dict)  # "phone"/"desktop" -> JS_OVERFLOW result
    raw_markup: list = field(default_factory=list)
    wide_code: dict = field(default_factory=dict)
    equations: dict = field(default_factory=dict)
    alt: list = field(default_factory=list)
    screenshot: Path | None = None


_REPORTS: dict = {}


def inspect(browser: Browser, entry: str) -> Report:
    if entry in _REPORTS:
        return _REPORTS[entry]
    report = Report(url=browser.base + entry + ".html")
    browser.blocked = report.blocked
    page = browser.context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and report.console_errors.append(
                f"{m.text} (at {m.location.get('url', '?')}:{m.location.get('lineNumber', '?')})"
            )
        ),
    )
    page.on("pageerror", lambda exc: report.page_errors.append(str(exc)))
    page.on(
        "requestfailed",
        lambda r: r.url.startswith(browser.base) and report.failed_local.append(f"{r.url}: {r.failure}"),
    )
    page.on(
        "response",
        lambda r: (
            r.url.startswith(browser.base)
            and r.status >= 400
            and report.failed_local.append(f"{r.url}: HTTP {r.status}")
        ),
    )
    try:
        page.set_viewport_size(DESKTOP)
        response = page.goto(report.url, wait_until="load")
        report.status = response.status if response else None
        if report.status != 200:
            return report
        report.mathjax = page.evaluate(JS_WAIT_MATHJAX)
        report.math = page.evaluate(JS_MATH)
        report.images = page.evaluate(JS_IMAGES)
        links = page.evaluate(JS_LINKS)
        report.links, report.colab = links["all"], links["colab"]
        report.overflow["desktop"] = page.evaluate(JS_OVERFLOW)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        report.screenshot = SCREENSHOTS / f"{_page_id(entry)}.png"
        page.screenshot(path=str(report.screenshot), full_page=True)
        report.raw_markup = page.evaluate(JS_RAW_MARKUP)
        report.equations = page.evaluate(JS_EQUATIONS)
        report.alt = page.evaluate(JS_ALT)
        report.wide_code = page.evaluate(JS_WIDE_CODE)  # opens collapsed blocks: after the screenshot
        page.set_viewport_size(PHONE)
        report.overflow["phone"] = page.evaluate(JS_OVERFLOW)
        page.wait_for_timeout(200)  # let late console messages arrive
    finally:
        page.close()
        _REPORTS[entry] = report
    return report


@pytest.fixture
def report(browser, entry) -> Report:
    rep = inspect(browser, entry)
    if rep.status != 200:
        pytest.fail(f"{rep.url} answered HTTP {rep.status}: did the build write {entry}.html?")
    return rep


# ----------------------------------------------------------------------------------------------------------
# The checks


@pytest.mark.parametrize("entry", PAGES, ids=_page_id)
def test_page_loads_without_errors(report):
    problems = (
        [f"console error: {e}" for e in report.console_errors]
        + [f"uncaught exception: {e}" for e in report.page_errors]
        + [f"failed request: {e}" for e in report.failed_local]
        + [f"external request (blocked; ship the asset with the book): {u}" for u in report.blocked]
    )
    assert not problems, f"{report.url}:\n" + "\n".join(problems)


@pytest.mark.parametrize("entry", PAGES, ids=_page_id)
def test_math_is_typeset(report, browser):
    m = report.math
    if m["n_math"] == 0:
        assert not m["leftovers"], f"{report.url}: math left as raw text (no math was parsed): {m['leftovers']}"
        return
    assert browser.mathjax is not None, browser.mathjax_problem
    assert report.mathjax == "ok", f"{report.url}: MathJax did not load or start ({report.mathjax})"
    assert not m["raw"], f"{report.url}: {len(m['raw'])} of {m['n_math']} formulas not typeset: {m['raw'][:5]}"
    assert not m["errors"], f"{report.url}: MathJax reports TeX errors: {m['errors']}"
    assert not m["leftovers"], f"{report.url}: raw TeX left in the text: {m['leftovers'][:5]}"
    assert m["n_typeset"] >= m["n_math"], m
    if m["wide"]:
        # Not a failure (the equation scrolls; the page does not overflow), but worth a look: split it.
        warnings.warn(
            f"{report.url}: display equations wider than the text at {DESKTOP['width']} px: {m['wide']}", stacklevel=1
        )


@pytest.mark.parametrize("entry", PAGES, ids=_page_id)
def test_images_load(report):
    assert not report.images["broken"], (
        f"{report.url}: {len(report.images['broken'])} of {report.images['n']} images did not load "
        f"(naturalWidth 0): {report.images['broken']}"
    )


def _expected_colab_url(entry: str) -> str:
    """The Colab address for a notebook, from _config.yml's launch_buttons and repository settings."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = urllib.parse.urlsplit(config["repository"]["url"]).path.strip("/")
    book = (config["repository"].get("path_to_book") or "").strip("/")
    path = "/".join(p for p in (book, entry + ".ipynb") if p)
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{repo}/blob/{config['repository'].get('branch', 'main')}/{path}"


@pytest.mark.parametrize("entry", NOTEBOOK_PAGES, ids=_page_id)
def test_colab_button_opens_this_notebook(report, entry):
    assert toc_source(entry).suffix == ".ipynb"
    expected = _expected_colab_url(entry)
    assert report.colab, f"{report.url}: no Colab launch button"
    assert set(report.colab) == {expected}, f"{report.url}: Colab button points at {report.colab}, not {expected}"


_FETCHED: dict = {}


def _fetch(url: str) -> tuple[int, str]:
    if url not in _FETCHED:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body = resp.read().decode("utf-8", "replace") if url.endswith(".html") else ""
                _FETCHED[url] = (resp.status, body)
        except urllib.error.HTTPError as exc:
            _FETCHED[url] = (exc.code, "")
    return _FETCHED[url]


@pytest.mark.parametrize("entry", PAGES, ids=_page_id)
def test_internal_links_resolve(report, browser):
    broken = []
    for href in sorted(set(report.links)):
        if not href.startswith(browser.base):
            continue
        target, _, fragment = href.partition("#")
        status, body = _fetch(target)
        if status != 200:
            broken.append(f"{href}: HTTP {status}")
        elif fragment and body:
            anchor = urllib.parse.unquote(fragment)
            if f'id="{anchor}"' not in body and f'name="{anchor}"' not in body:
                broken.append(f"{href}: no element with id {anchor!r} in {target}")
    assert not broken, f"{report.url}: broken internal links:\n" + "\n".join(broken)


@pytest.mark.parametrize("width", ["phone", "desktop"])
@pytest.mark.parametrize("entry", PAGES, ids=_page_id)
def test_no_horizontal_overflow(report, width):
    o = report.overflow[width]
    assert o["scrollWidth"] <= o["viewport"] + 1 and not o["culprits"], (
        f"{report.url} at {width} width ({o['viewport']} px): page is {o['scrollWidth']} px wide; "
        f"sticking out ({o['n_culprits']} elements, first 8 shown):\n" + "\n".join(o["culprits"])
    )


@pytest.mark.parametrize("entry", PAGES, ids=_page_id)
def test_no_raw_markup_in_text(report):
    """Markdown or MyST the parser did not understand shows as text: "|---|" of a table, "{eq}", ":::", "$$"."""
    assert not report.raw_markup, f"{report.url}: raw Markdown/MyST in the visible text:\n" + "\n".join(
        report.raw_markup
    )


@pytest.mark.parametrize("entry", PAGES, ids=_page_id)
def test_code_fits_without_sideways_scrolling(report):
    """At 1280 px the code column holds about 80 characters; notebook code is formatted to 79 (book/ruff.toml)."""
    w = report.wide_code
    assert not w["wide"], (
        f"{report.url}: {len(w['wide'])} of {w['n_measured']} code blocks need sideways scrolling at "
        f"{DESKTOP['width']} px (ruff format with book/ruff.toml, and shorten long strings):\n" + "\n".join(w["wide"])
    )


def _chapter_number(entry: str) -> int | None:
    head = Path(entry).name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


@pytest.mark.parametrize("entry", PAGES, ids=_page_id)
def test_equation_numbers_are_per_chapter(report, entry):
    """Equations of chapter 7 are numbered (7.1), (7.2), ... in order, as its figures are (Figure 7.1)."""
    numbers, refs = report.equations["numbers"], report.equations["refs"]
    chapter = _chapter_number(entry)
    if chapter is None:
        expected = [f"({n})" for n in range(1, len(numbers) + 1)]
    else:
        expected = [f"({chapter}.{n})" for n in range(1, len(numbers) + 1)]
    assert numbers == expected, f"{report.url}: equation numbers {numbers}, expected {expected}"
    pattern = re.compile(r"^\((\d+\.)?\d+\)$")
    bad = [r for r in refs if not pattern.match(r)]
    assert not bad, f"{report.url}: references to equations that do not read (chapter.n): {bad}"
    if chapter is not None:
        local = [r for r in refs if r.startswith(f"({chapter}.")]
        unknown = sorted(set(local) - set(numbers))
        assert not unknown, f"{report.url}: references {unknown} name no equation on the page"


@pytest.mark.parametrize("entry", PAGES, ids=_page_id)
def test_images_have_alt_text(report):
    """Screen readers read the alt text; Sphinx's default alt is the image's address, which says nothing."""
    missing = [
        img["src"] for img in report.alt if not img["alt"] or img["alt"] == img["src"] or IMAGE_FILE.search(img["alt"])
    ]
    assert not missing, (
        f"{report.url}: {len(missing)} of {len(report.alt)} images have no alt text (a code cell's figure gets one "
        "from its metadata, mystnb.image.alt):\n" + "\n".join(missing)
    )


def test_screenshots_saved(browser):
    """Every page inspected so far left its desktop screenshot (a non-empty PNG) in artifacts/screenshots."""
    shots = {e: r.screenshot for e, r in _REPORTS.items() if r.status == 200}
    if not shots:
        pytest.skip("no page was inspected in this run")
    for entry, path in shots.items():
        assert path is not None and path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", entry
    print(
        json.dumps({e: str(p.relative_to(ROOT)) for e, p in shots.items()}, indent=1),
        f"MathJax {mathjax_version(browser.mathjax) if browser.mathjax else 'missing'}",
    )
