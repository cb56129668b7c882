"""The built docs site: strict build, math typeset offline, no request to any other host.

The site is built into a temporary directory, served on 127.0.0.1 on a free port, and
every page is loaded in headless Chromium. Chromium is pointed at a recording proxy: the
local server is reached directly (Chromium never proxies loopback addresses), so any
request that reaches the proxy is a request to another host, and fails the test. A canary
page that does reference an outside host proves the proxy sees such requests.

Chromium itself talks to a few Google service hosts whatever page it shows (component
updates, network time, sign-in; they appear for a blank ``data:`` page too). The flags
below switch most of that off; what remains is listed in ``CHROMIUM_SERVICE_HOSTS`` and
not counted against the site. Font servers, CDNs and analytics hosts are not on that list,
and no docs page has a reason to ask any of the hosts that are.

Screenshots of every page are saved to artifacts/screenshots/ (gitignored) for a person
to look at. Skips, with the reason, when mkdocs or chromium is not installed.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

import pytest

import cycnn

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: hosts Chromium contacts on its own, even for a blank page (seen 2026-11-23: sign-in,
#: network time, component updates, autofill), plus their usual siblings
CHROMIUM_SERVICE_HOSTS = {
    "accounts.google.com",
    "update.googleapis.com",
    "clientservices.googleapis.com",
    "content-autofill.googleapis.com",
    "optimizationguide-pa.googleapis.com",
    "safebrowsing.googleapis.com",
    "redirector.gvt1.com",
}
_CHROMIUM_SERVICE = re.compile(r"^(clients\d*\.google\.com|[\w-]+\.gvt1\.com)$")


def chromium_service(host: str | None) -> bool:
    """True for the browser's own background hosts (never for a site's resources)."""
    return bool(host) and (host in CHROMIUM_SERVICE_HOSTS or bool(_CHROMIUM_SERVICE.match(host)))


needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (pip install -e '.[docs]'): the site is not built",
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium): pages are not loaded",
)

pytestmark = needs_mkdocs


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site with ``mkdocs build --strict`` into a temporary directory."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
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


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with 502 and writes it down (CONNECT for https included)."""

    seen: list[str] = []

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._record
        raise AttributeError(name)

    def _record(self):
        host = urllib.parse.urlsplit(self.path).hostname if "://" in self.path \
            else self.path.rsplit(":", 1)[0]  # CONNECT host:443
        if not chromium_service(host):
            self.seen.append(f"{self.command} {self.path}")
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def proxy():
    """A proxy on 127.0.0.1 that records requests; yields (address, list of requests)."""
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def chromium(url: str, proxy_address: str, *mode: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``url`` with one headless command (``--dump-dom`` etc.)."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-default-apps",
            "--disable-extensions", "--disable-client-side-phishing-detection",
            "--no-pings", "--disable-domain-reliability", "--disable-breakpad",
            "--metrics-recording-only", "--safebrowsing-disable-auto-update",
            "--disable-features=NetworkTimeServiceQuerying,AutofillServerCommunication,"
            "OptimizationHints,OptimizationGuideModelDownloading,Translate,MediaRouter",
            f"--user-data-dir={profile}",
            f"--proxy-server=http://{proxy_address}",
            "--window-size=1300,1800", "--virtual-time-budget=15000", *mode, url,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_only_browser_service_hosts_are_ignored():
    assert chromium_service("clients2.google.com") and chromium_service("update.googleapis.com")
    for host in ("fonts.googleapis.com", "fonts.gstatic.com", "ajax.googleapis.com",
                 "cdn.jsdelivr.net", "unpkg.com", "www.google-analytics.com", "github.com",
                 "api.github.com", "www.google.com", None):
        assert not chromium_service(host), host


# --------------------------------------------------------------------------- static checks

class _Resources(html.parser.HTMLParser):
    """Collect every URL a page asks the browser to load (not plain links)."""

    LOADS = {
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
    return bool(re.match(r"^(https?:)?//", url.strip(), re.I))


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


def test_mathjax_is_served_by_the_site(site):
    script = site / "javascripts" / "mathjax" / "tex-svg-full.js"
    assert script.is_file() and script.stat().st_size > 1_000_000
    assert (site / "javascripts" / "mathjax" / "LICENSE").is_file()
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "javascripts/mathjax/tex-svg-full.js" in index


def test_api_page_has_an_entry_for_every_public_name(site):
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in cycnn.__all__ if f'id="cycnn.{name}"' not in api]
    assert not missing, f"no API entry (anchor id) on the built API page for: {missing}"


# --------------------------------------------------------------------------- in a browser

_RAW_MATH = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]")


def _visible_text_outside_code(dom: str) -> str:
    """The DOM without scripts, styles, code and preformatted blocks."""
    for tag in ("script", "style", "pre", "code", "textarea"):
        dom = re.sub(rf"<{tag}\b.*?</{tag}>", "", dom, flags=re.S | re.I)
    return dom


@needs_chromium
def test_pages_typeset_math_and_ask_no_other_host(site, server, proxy):
    proxy_address, seen = proxy
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = pages_of(site)
    assert len(pages) >= 5, pages
    problems = []
    for page in pages:
        url = server + page
        name = page.strip("/").replace("/", "_") or "index"
        source = (site / page / "index.html").read_text(encoding="utf-8")
        dom = chromium(url, proxy_address, "--dump-dom").stdout
        if "<body" not in dom:
            problems.append(f"{page}: chromium returned no DOM")
            continue
        if 'class="arithmatex"' in source:
            if "<mjx-container" not in dom:
                problems.append(f"{page}: has math but MathJax typeset none (no mjx-container)")
            raw = _RAW_MATH.findall(_visible_text_outside_code(dom))
            if raw:
                problems.append(f"{page}: untypeset math delimiters remain: {sorted(set(raw))}")
        shot = chromium(url, proxy_address, f"--screenshot={SCREENSHOTS / (name + '.png')}")
        if not (SCREENSHOTS / f"{name}.png").is_file():
            problems.append(f"{page}: no screenshot\n{shot.stderr[-2000:]}")
    assert not problems, "\n".join(problems)
    assert not seen, "pages asked other hosts (requests reached the proxy):\n" + "\n".join(seen)


@needs_chromium
def test_proxy_catches_a_request_to_another_host(site, server, proxy):
    """The canary: a page that does load from another host must show up at the proxy."""
    proxy_address, seen = proxy
    canary = site / "canary-external.html"
    canary.write_text(
        '<!doctype html><html><body><img src="http://canary.example.invalid/pixel.png">'
        "</body></html>",
        encoding="utf-8",
    )
    try:
        chromium(server + canary.name, proxy_address, "--dump-dom")
    finally:
        canary.unlink()
    hits = [s for s in seen if "canary.example.invalid" in s]
    for hit in hits:
        seen.remove(hit)  # keep the list clean for the other test
    assert hits, f"the recording proxy saw no request from the canary page (saw {seen})"
