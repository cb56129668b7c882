"""The built docs site: strict build, offline math that renders on every screen, nothing
asked of any other host.

The site is built once into a temporary directory and served on 127.0.0.1. Static checks
read the built files. The browser checks load every page in headless Chromium, driven over
the Chrome DevTools Protocol (tests/_cdp.py), at a phone width (390 px) and a desktop
width (1300 px), plus the desktop width in the dark palette, and fail on

* a display equation that is not typeset, has an empty box, is drawn below 85 % of its
  natural size, or is cut off instead of scrolling (and inline math that is not typeset,
  or runs off the side of the screen);
* a page that scrolls sideways as a whole (whatever is wide must scroll in its own box);
* on the desktop width, a code block or display equation that needs sideways scrolling;
* any JavaScript error: uncaught exceptions, ``console.error``, failed loads;
* raw TeX left in the page text (``\\(``, ``$$``, ``\\frac``, an escaped quote ``\\"``);
* an image that did not load;
* any request the page (or a worker it starts) makes to a host other than the local
  server. The protocol says which tab made a request, so the browser's own background
  traffic (Chromium asks www.google.com and update servers for itself) is not counted.

A canary page that breaks every one of these rules proves that each check can fail.
Screenshots of every page at every width are saved to artifacts/screenshots/ (gitignored)
for a person to look at, as PNG tiles of at most 2400 px height. Skips, with the reason,
when mkdocs or chromium is not installed.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

import cycnn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cdp  # noqa: E402

from conftest import needs_browser  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"

#: (label, width, height, dark palette)
VIEWS = [("phone", 390, 844, False), ("desktop", 1300, 900, False),
         ("desktop-dark", 1300, 900, True)]
#: the dark view is for the figures and the palette; the API page (the longest, no figures)
#: is loaded in the light views only, which keeps the whole run near two minutes
LIGHT_ONLY = {"api/"}


def views_of(page):
    return [v for v in VIEWS if not (v[3] and page in LIGHT_ONLY)]

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (pip install -e '.[docs]'): the site is not built",
)
needs_chromium = needs_browser(_cdp.EXECUTABLE, "pages are not loaded")

pytestmark = [needs_mkdocs, pytest.mark.slow]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site with ``mkdocs build --strict`` into a temporary directory."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def pages_of(site: Path) -> list[str]:
    """URL paths of the site's pages, e.g. ``''`` and ``'conv-forward/'``."""
    pages = []
    for index in sorted(site.rglob("index.html")):
        rel = index.parent.relative_to(site).as_posix()
        if rel == "." or not rel.startswith(("assets", "search", "javascripts")):
            pages.append("" if rel == "." else rel + "/")
    return pages


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    """Serve the built site on 127.0.0.1 and a free port; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


# --------------------------------------------------------------------------- static checks

class _Resources(html.parser.HTMLParser):
    """Collect every URL a page asks the browser to load (not plain links)."""

    LOADS: ClassVar[dict[str, tuple[str, ...]]] = {
        "script": ("src",), "img": ("src", "srcset"), "iframe": ("src",),
        "source": ("src", "srcset"), "video": ("src", "poster"), "audio": ("src",),
        "embed": ("src",), "object": ("data",), "track": ("src",),
    }

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        names = self.LOADS.get(tag, ())
        if tag == "link":
            names = ("href",)  # stylesheets, icons, preloads, manifests all load
        for name in names:
            if attrs.get(name):
                self.urls.extend(u.strip().split(" ")[0] for u in attrs[name].split(","))


def _external(url: str) -> bool:
    return bool(re.match(r"^(https?:)?//", url.strip(), re.IGNORECASE))


def test_pages_load_nothing_from_other_hosts(site):
    offenders = []
    for page in site.rglob("*.html"):
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        offenders += [f"{page.relative_to(site)}: {u}" for u in parser.urls if _external(u)]
    for css in site.rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read_text(encoding="utf-8")):
            if _external(url):
                offenders.append(f"{css.relative_to(site)}: {url}")
        for url in re.findall(r"@import\s+['\"]([^'\"]+)", css.read_text(encoding="utf-8")):
            if _external(url):
                offenders.append(f"{css.relative_to(site)}: {url}")
    assert not offenders, "the site would load from other hosts:\n" + "\n".join(offenders)


def test_mathjax_and_its_fonts_are_served_by_the_site(site):
    script = site / "javascripts" / "mathjax" / "tex-chtml-full.js"
    assert script.is_file() and script.stat().st_size > 1_000_000
    assert (site / "javascripts" / "mathjax" / "LICENSE").is_file()
    fonts = sorted((site / "javascripts" / "mathjax" / "output" / "chtml" / "fonts" /
                    "woff-v2").glob("*.woff"))
    names = {f.name for f in fonts}
    assert {"MathJax_Main-Regular.woff", "MathJax_Math-Italic.woff", "MathJax_Zero.woff",
            "MathJax_Size1-Regular.woff"} <= names, names
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "javascripts/mathjax/tex-chtml-full.js" in index


def test_api_page_has_an_entry_for_every_public_name(site):
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in cycnn.__all__ if f'id="cycnn.{name}"' not in api]
    assert not missing, f"no API entry (anchor id) on the built API page for: {missing}"


def test_api_page_shows_no_rst_markup_and_no_private_base(site):
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    text = re.sub(r"<pre\b.*?</pre>", "", api, flags=re.DOTALL)
    assert "``" not in text, re.findall(r".{60}``.{60}", text)[:5]
    assert ":func:" not in text and ":class:" not in text
    assert "_Pool2D" not in api, "the API page shows the private base class _Pool2D"


def test_links_between_pages_reach_their_anchors(site):
    """A link to ``page/#anchor`` lands on an element with that id (mkdocs checks that the
    page exists, not the anchor)."""
    ids = {}
    for page in site.rglob("*.html"):
        ids[page.resolve()] = set(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))
    broken = []
    for page in ids:
        for href in re.findall(r'href="([^"#:]*)#([^"]+)"', page.read_text(encoding="utf-8")):
            target = (page.parent / href[0]).resolve()
            if target.is_dir():
                target = target / "index.html"
            if target in ids and href[1] not in ids[target]:
                broken.append(f"{page.relative_to(site)} -> {href[0]}#{href[1]}")
    assert not broken, "links to missing anchors:\n" + "\n".join(sorted(set(broken)))


_SEARCH_TEX = re.compile(r"\\[()\[\]]|\$\$|\\(?:frac|sum|partial|cdot|operatorname|text|"
                         r"begin|end|mathsf|hat|qquad|quad|times|varepsilon)\b")


def test_search_index_holds_no_raw_tex(site):
    """Search results are shown without MathJax: the index must hold plain text."""
    docs = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    offenders = []
    for doc in docs:
        prose = re.sub(r"<pre>.*?</pre>", "", doc["text"], flags=re.DOTALL)
        for field in (doc["title"], prose):
            found = _SEARCH_TEX.findall(field)
            if found:
                offenders.append(f"{doc['location']}: {sorted(set(found))}")
    assert not offenders, "raw TeX in the search index:\n" + "\n".join(offenders[:20])
    assert any("(sh, sw)" in doc["text"] for doc in docs)  # math kept, as plain text


_BLOCK = re.compile(r'<div class="(?:language-[\w-]+ )?highlight"(?P<attrs>[^>]*)><pre>(?P<body>.*?)</pre>',
                    re.DOTALL)


def test_copy_buttons_copy_the_code_without_prompts_or_outputs(site):
    """Every doctest block on every page carries the text its copy button copies
    (Material copies a ``data-copy`` attribute when there is one): the source lines
    only, which compile as a script."""
    checked = 0
    for page in sorted(site.rglob("*.html")):
        for block in _BLOCK.finditer(page.read_text(encoding="utf-8")):
            if "&gt;&gt;&gt;" not in block["body"]:
                continue
            copy = re.search(r'data-copy="([^"]*)"', block["attrs"])
            assert copy, f"{page}: a block with >>> prompts has no data-copy"
            code = html.unescape(copy.group(1))
            assert ">>>" not in code and not re.search(r"^\.\.\. ", code, re.MULTILINE), code
            compile(code, f"{page.name} copy", "exec")
            checked += 1
    assert checked > 50, checked


# --------------------------------------------------------------------------- in a browser

#: measures, in the page, what a reader sees; returns a list of problems
PAGE_CHECK = r"""
(() => {
  const problems = [];
  const viewport = document.documentElement.clientWidth;
  // the part of an element's box that is not clipped away by an ancestor that hides its
  // overflow (an ancestor that scrolls keeps everything reachable)
  function visibleWidth(el) {
    const r = el.getBoundingClientRect();
    let left = r.left, right = r.right;
    for (let a = el.parentElement; a && a !== document.documentElement; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === "hidden" || o === "clip") {
        const ar = a.getBoundingClientRect();
        left = Math.max(left, ar.left);
        right = Math.min(right, ar.right);
      }
      if (o === "auto" || o === "scroll") break;
    }
    left = Math.max(left, 0);
    right = Math.min(right, viewport);
    return Math.max(0, right - left);
  }
  function scrollsInside(el) {
    for (let a = el.parentElement; a; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === "auto" || o === "scroll") return a;
      if (a.classList.contains("md-content")) return null;
    }
    return null;
  }
  document.querySelectorAll("div.arithmatex").forEach((block, k) => {
    const label = `display equation ${k + 1}`;
    const box = block.querySelector("mjx-container");
    const math = box && box.querySelector("mjx-math, svg");
    if (!math) { problems.push(`${label}: not typeset`); return; }
    const drawn = math.getBoundingClientRect();
    if (drawn.width < 1 || drawn.height < 1) {
      problems.push(`${label}: empty box (${drawn.width.toFixed(1)} x ${drawn.height.toFixed(1)} px)`);
      return;
    }
    // its natural size: the same container, in the same place, with no width limit
    const probe = document.createElement("div");
    probe.className = "arithmatex";
    probe.style.cssText = "position:absolute;left:0;top:0;visibility:hidden;" +
                          "width:max-content;max-width:none;overflow:visible";
    probe.appendChild(box.cloneNode(true));
    block.parentNode.appendChild(probe);
    const natural = probe.querySelector("mjx-math, svg").getBoundingClientRect();
    probe.remove();
    const scale = Math.min(drawn.width / natural.width, drawn.height / natural.height);
    if (scale < 0.85) {
      problems.push(`${label}: drawn at ${Math.round(100 * scale)} % of its natural size`);
    }
    const scroller = scrollsInside(math);
    const seen = visibleWidth(math);
    if (!scroller && seen < 0.85 * drawn.width) {
      problems.push(`${label}: cut off, ${Math.round(seen)} of ${Math.round(drawn.width)} px visible`);
    }
    if (scroller && visibleWidth(scroller) < 50) {
      problems.push(`${label}: its scrolling box is ${Math.round(visibleWidth(scroller))} px wide`);
    }
  });
  document.querySelectorAll("span.arithmatex").forEach((span, k) => {
    const math = span.querySelector("mjx-container mjx-math, mjx-container svg");
    const r = math && math.getBoundingClientRect();
    if (!math || r.width < 1 || r.height < 1) {
      problems.push(`inline math ${k + 1}: not typeset or empty (${span.textContent.slice(0, 40)})`);
    } else if (!scrollsInside(math) && visibleWidth(math) < r.width - 1) {
      // inline math does not wrap: a long formula runs off the side of a phone
      problems.push(`inline math ${k + 1}: runs off the screen, ${Math.round(visibleWidth(math))} ` +
                    `of ${Math.round(r.width)} px visible`);
    }
  });
  // the page itself does not scroll sideways: on a phone the reader would pan off the text
  const wider = document.documentElement.scrollWidth - viewport;
  if (wider > 1) {
    const unclipped = el => {
      for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
        if (getComputedStyle(a).overflowX !== "visible") return false;
      }
      return true;
    };
    const culprit = [...document.body.querySelectorAll("*")].find(
      el => el.getBoundingClientRect().right > viewport + 1 && unclipped(el));
    const what = culprit ? `${culprit.tagName.toLowerCase()} ` +
      `"${culprit.textContent.replace(/\s+/g, " ").slice(0, 40)}"` : "unknown";
    problems.push(`the page scrolls sideways by ${wider} px (first too wide: ${what})`);
  }
  // raw TeX in what a reader sees (code, math and hidden search results excluded)
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      const el = node.parentElement;
      if (!el || el.closest("pre, code, kbd, script, style, textarea, mjx-container, .md-search")) {
        return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }
  });
  let text = "";
  while (walker.nextNode()) text += walker.currentNode.nodeValue + " ";
  const tex = text.match(/\\[()\[\]"]|\$\$|\\(?:frac|sum|partial|cdot|operatorname|text|begin|end|mathsf|hat|qquad|times|varepsilon)\b/g);
  if (tex) problems.push(`raw TeX in the page text: ${[...new Set(tex)].join(" ")}`);
  // on a desktop, code and display equations fit the text column: nothing to scroll
  // (a traceback's one long message line excepted)
  if (viewport >= 1200) {
    document.querySelectorAll(".md-content pre > code").forEach((code, k) => {
      if (code.scrollWidth > code.clientWidth + 1 &&
          !code.textContent.includes("Traceback (most recent call last)")) {
        problems.push(`code block ${k + 1}: cut at ${code.clientWidth} px, needs ${code.scrollWidth}`);
      }
    });
    document.querySelectorAll("div.arithmatex").forEach((block, k) => {
      if (block.scrollWidth > block.clientWidth + 1) {
        problems.push(`display equation ${k + 1}: needs sideways scrolling on a desktop`);
      }
    });
  }
  if (window.__expect_dark !== undefined) {
    const scheme = document.body.getAttribute("data-md-color-scheme");
    if ((scheme === "slate") !== window.__expect_dark) problems.push(`palette is ${scheme}`);
  }
  document.querySelectorAll(".md-content img").forEach(img => {
    if (!img.complete || img.naturalWidth === 0) problems.push(`image not loaded: ${img.getAttribute("src")}`);
  });
  return problems;
})()
"""


def _local(url: str, server: str) -> bool:
    return url.startswith((server, "data:", "blob:", "about:"))


def inspect_page(browser, url, server, view, shot_stem=None):
    """Load one page in one view; returns (problems, foreign requests, errors, tiles)."""
    _label, width, height, dark = view
    tab = browser.new_tab(width, height, dark=dark)
    try:
        tab.goto(url)
        tab.evaluate(f"window.__expect_dark = {'true' if dark else 'false'}")
        problems = tab.evaluate(PAGE_CHECK)
        tiles = tab.screenshot(str(shot_stem)) if shot_stem else []
        foreign = [u for u in tab.requests if not _local(u, server)]
        return problems, foreign, tab.errors, tiles
    finally:
        tab.close()


@pytest.fixture(scope="module")
def browser():
    if _cdp.EXECUTABLE is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with _cdp.Chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def loaded(site, server, browser):
    """Every page in every view: {(page, view label): (problems, requests, errors)}."""
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    results, started = {}, time.monotonic()
    for page in pages_of(site):
        name = page.strip("/").replace("/", "_") or "index"
        for view in views_of(page):
            stem = SCREENSHOTS / f"{name}-{view[0]}"
            problems, foreign, errors, _ = inspect_page(browser, server + page, server, view, stem)
            results[page, view[0]] = problems, foreign, errors
    seconds = time.monotonic() - started
    (SCREENSHOTS / "summary.txt").write_text(
        f"{browser.version}: {len(results)} page loads in {seconds:.1f} s\n" +
        "".join(f"{page or 'index'} {view}: {len(p)} problems, {len(r)} foreign requests, "
                f"{len(e)} errors\n" for (page, view), (p, r, e) in results.items()))
    return results


def _report(loaded, index):
    return "\n".join(f"{page or '(home)'} at {view}: {item}"
                     for (page, view), found in loaded.items() for item in found[index])


@needs_chromium
def test_every_page_renders_its_math_images_and_text(loaded):
    assert len(loaded) >= 5 * len(VIEWS), sorted(loaded)
    assert {view for _, view in loaded} == {v[0] for v in VIEWS}
    problems = _report(loaded, 0)
    assert not problems, "pages that do not render as they should:\n" + problems


@needs_chromium
def test_no_page_asks_another_host(loaded):
    foreign = _report(loaded, 1)
    assert not foreign, "pages asked other hosts:\n" + foreign


@needs_chromium
def test_no_page_raises_a_javascript_error(loaded):
    errors = _report(loaded, 2)
    assert not errors, "JavaScript errors:\n" + errors


@needs_chromium
def test_screenshots_of_every_page_are_saved(site, loaded):
    for page in pages_of(site):
        name = page.strip("/").replace("/", "_") or "index"
        for label, *_ in views_of(page):
            assert (SCREENSHOTS / f"{name}-{label}-01.png").stat().st_size > 5000, (name, label)


CANARY = r"""<!doctype html>
<html><head><meta charset="utf-8">
<style>
  #squeezed mjx-container { transform: scale(0.5); transform-origin: left; }
  #empty mjx-container { display: inline-block; width: 0; overflow: hidden; }
  pre > code { display: block; overflow: auto; }
</style></head>
<body><div class="md-content">
  <p>Raw \(x\) and \"quotes\" left for the reader.</p>
  <p><span class="arithmatex" id="long">\(y = TERMS\)</span></p>
  <div class="arithmatex" id="squeezed">\[ y = \sum_{c, p, q} w[f, c, p, q] \, x[n, c, i + p, j + q] \]</div>
  <div class="arithmatex" id="empty">\[ dx = \operatorname{rot180}(w) \star dy \]</div>
  <img src="http://canary.example.invalid/pixel.png" alt="">
  <pre><code>LONG</code></pre>
  <script>console.error("canary: console error");</script>
  <script>throw new Error("canary: uncaught exception");</script>
</div>
<script src="javascripts/mathjax-config.js"></script>
<script src="javascripts/mathjax/tex-chtml-full.js"></script>
</body></html>
"""


@needs_chromium
def test_the_canary_trips_every_check(site, server, browser):
    """A page that breaks every rule must be caught by every check, at both widths."""
    canary = site / "canary.html"
    terms = " + ".join(f"w_{{{k}}} x_{{{k}}}" for k in range(40))
    canary.write_text(CANARY.replace("TERMS", terms).replace("LONG", "x = 1  # " + "a" * 300),
                      encoding="utf-8")
    try:
        for view in VIEWS[:2]:
            problems, foreign, errors, _ = inspect_page(browser, server + canary.name, server,
                                                        view)
            text = "\n".join(problems)
            assert "display equation 1: drawn at 50 %" in text, text
            assert "display equation 2: cut off" in text or "display equation 2: empty" in text, text
            assert "raw TeX" in text and "\\(" in text and '\\"' in text, text
            assert "image not loaded" in text, text
            assert "inline math 1: runs off the screen" in text, text
            assert "the page scrolls sideways by" in text, text
            if view[1] >= 1200:
                assert "code block 1: cut at" in text, text
            assert any("canary.example.invalid" in u for u in foreign), foreign
            assert any("canary: console error" in e for e in errors), errors
            assert any("canary: uncaught exception" in e for e in errors), errors
    finally:
        canary.unlink()


@needs_chromium
def test_a_copy_button_copies_code_that_runs(site, server, browser):
    """Click the first copy button of the pooling page as a reader would; what reaches the
    clipboard has no prompts and no outputs, and runs on its own."""
    tab = browser.new_tab(1300, 900)
    try:
        tab.goto(server + "pooling/")
        tab.evaluate("""document.addEventListener("copy", () => {
            const el = document.activeElement;
            window.__copied = el && el.value !== undefined ? el.value : String(getSelection());
        }, true)""")
        x, y = tab.evaluate("""(() => {
            const button = document.querySelector("button[data-clipboard-target]");
            button.scrollIntoView({block: "center"});
            const r = button.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2];
        })()""")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            tab.command("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                     "button": "left", "clickCount": 1})
        copied = tab.evaluate("""new Promise(done => {
            const wait = () => window.__copied ? done(window.__copied) : setTimeout(wait, 50);
            wait();
        })""", timeout=10)
    finally:
        tab.close()
    assert ">>>" not in copied and "[[6. 8.]" not in copied, copied
    proc = subprocess.run([sys.executable, "-c", copied], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "[[6. 8.]" in proc.stdout, proc.stdout
