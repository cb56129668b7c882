"""A small driver for headless Chromium over the Chrome DevTools Protocol (CDP).

Chromium is started with ``--remote-debugging-pipe``: it reads commands from file
descriptor 3 and writes replies and events to file descriptor 4, each message one JSON
object followed by a NUL byte. No network port, no extra package. Every event carries the
session of the tab (or worker) it belongs to, so what a *page* does (its requests, its
console errors, its exceptions) is told apart from what the browser does on its own
(Chromium 150 asks www.google.com and update servers for itself, whatever page it shows).

    with Chromium() as browser:
        tab = browser.new_tab(width=390, height=844)
        tab.goto("http://127.0.0.1:8000/")
        tab.evaluate("document.title")
        tab.requests   # every URL the page and its workers asked for
        tab.errors     # console errors, uncaught exceptions, failed loads
        tab.close()
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time

EXECUTABLE = shutil.which("chromium") or shutil.which("chromium-browser")

#: flags that keep the browser quiet and the pages reproducible; none of them changes how
#: a page is laid out
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--hide-scrollbars",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--no-default-browser-check", "--disable-default-apps",
    "--disable-extensions", "--disable-breakpad", "--mute-audio", "--font-render-hinting=none",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--remote-debugging-pipe",
]


class CDPError(RuntimeError):
    """A command failed, or Chromium did not answer in time."""


class Chromium:
    """One headless Chromium process, driven over its debugging pipe."""

    def __init__(self, executable: str | None = None, timeout: float = 30.0):
        self.executable = executable or EXECUTABLE
        if self.executable is None:
            raise CDPError("chromium is not installed (apt-get install -y chromium)")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="cycnn-chromium-")
        # Chromium's own output, kept open for as long as the process runs. Like our pipe
        # ends it is kept away from 3 and 4, which the child's ends are copied to: a log
        # opened as fd 4 was replaced by the pipe before being copied onto 1 and 2, and
        # Chromium's warnings then arrived as protocol messages and killed the reader
        self._log = _high(os.open(os.path.join(self._profile.name, "stderr.log"),
                                  os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        to_chrome_r, to_chrome_w = (_high(fd) for fd in os.pipe())
        from_chrome_r, from_chrome_w = (_high(fd) for fd in os.pipe())
        argv = [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}",
                "about:blank"]
        self.pid = os.posix_spawn(self.executable, argv, dict(os.environ), file_actions=[
            (os.POSIX_SPAWN_DUP2, to_chrome_r, 3),
            (os.POSIX_SPAWN_DUP2, from_chrome_w, 4),
            (os.POSIX_SPAWN_DUP2, self._log, 1),
            (os.POSIX_SPAWN_DUP2, self._log, 2),
        ])
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._out = to_chrome_w
        self._in = from_chrome_r
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._events: list[dict] = []
        self._closed = False
        self._garbled: bytes | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.version = self.send("Browser.getVersion")["product"]

    # ----------------------------------------------------------------- the pipe

    def _write(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\0"
        with self._lock:
            while data:
                data = data[os.write(self._out, data):]

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._changed:
                    self._closed = True
                    self._changed.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                try:
                    message = json.loads(raw)
                except ValueError:
                    # not the protocol: say so at once rather than leave every
                    # command that follows to time out
                    with self._changed:
                        self._garbled = raw[:200]
                        self._closed = True
                        self._changed.notify_all()
                    return
                if message.get("method") == "Target.attachedToTarget":
                    self._start_worker(message)
                with self._changed:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self._events.append(message)
                    self._changed.notify_all()

    def _start_worker(self, message: dict) -> None:
        """A page started a worker (Material's search runs in one): watch its network and
        console too, then let it run. Sent without waiting, from the reader thread."""
        session = message["params"]["sessionId"]
        for method in ("Network.enable", "Runtime.enable", "Log.enable",
                       "Runtime.runIfWaitingForDebugger"):
            with self._lock:
                self._next_id += 1
                ident = self._next_id
            self._write({"id": ident, "method": method, "params": {}, "sessionId": session})

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one command and wait for its reply; returns the reply's ``result``."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._write(message)
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._changed:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    why = ("timeout" if not self._closed else "browser closed"
                           if self._garbled is None else f"the pipe carried {self._garbled!r}")
                    raise CDPError(f"no reply to {method} ({why})")
                self._changed.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def events(self, sessions: set[str], since: int = 0) -> list[dict]:
        """Events of the given sessions, from position ``since`` of the event log."""
        with self._lock:
            return [e for e in self._events[since:] if e.get("sessionId") in sessions]

    def wait_for(self, predicate, since: int = 0, timeout: float | None = None) -> dict:
        """Wait for (and return) the first event from position ``since`` of the event log
        on for which ``predicate`` holds."""
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = since
        with self._changed:
            while True:
                for event in self._events[seen:]:
                    if predicate(event):
                        return event
                seen = max(seen, len(self._events))
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CDPError("timed out waiting for an event")
                self._changed.wait(left)

    def mark(self) -> int:
        """The current length of the event log (a position for ``since``)."""
        with self._lock:
            return len(self._events)

    # ----------------------------------------------------------------- tabs

    def new_tab(self, width: int, height: int, dark: bool = False) -> Tab:
        """A tab in a browser context of its own: no cookies or local storage are shared
        with other tabs (a page's stored settings, such as Material's palette choice,
        cannot leak from one view into the next)."""
        context = self.send("Target.createBrowserContext")["browserContextId"]
        target = self.send("Target.createTarget", {"url": "about:blank",
                                                   "browserContextId": context})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        return Tab(self, target, session, width, height, dark, context)

    def close(self) -> None:
        if self.pid is None:
            return
        try:
            self.send("Browser.close", timeout=5)
        except CDPError:
            pass
        for _ in range(50):
            done, _status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self.pid = None
        for fd in (self._out, self._in, self._log):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Tab:
    """One page in its own tab, with everything it requested and every error it raised."""

    def __init__(self, browser: Chromium, target: str, session: str, width: int, height: int,
                 dark: bool, context: str | None = None):
        self.browser, self.target, self.session = browser, target, session
        self.context = context
        self.width, self.height = width, height
        self._start = browser.mark()
        send = self.command
        for domain in ("Page", "Runtime", "Log", "Network"):
            send(f"{domain}.enable")
        send("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": True,
                                      "flatten": True})
        send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
        send("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"},
            {"name": "prefers-reduced-motion", "value": "reduce"}]})

    def command(self, method: str, params: dict | None = None, timeout: float | None = None):
        return self.browser.send(method, params, self.session, timeout)

    def _sessions(self) -> set[str]:
        """This tab's session and the sessions of the workers it started."""
        sessions = {self.session}
        for event in self.browser.events(sessions | {None}, self._start):
            if event.get("method") == "Target.attachedToTarget" and \
                    event.get("sessionId") in sessions:
                sessions.add(event["params"]["sessionId"])
        return sessions

    def goto(self, url: str, timeout: float = 30.0) -> None:
        """Load ``url`` and wait for its load event, its fonts and MathJax's typesetting."""
        mark = self.browser.mark()
        self.command("Page.navigate", {"url": url})
        self.browser.wait_for(
            lambda e: e.get("sessionId") == self.session and
            e.get("method") == "Page.loadEventFired", since=mark, timeout=timeout)
        self.evaluate("""(async () => {
            if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
                await MathJax.startup.promise;
            }
            await document.fonts.ready;
            await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
            return true;
        })()""", timeout=timeout)

    def evaluate(self, expression: str, timeout: float | None = None):
        """The value of a JavaScript expression (promises awaited), or CDPError."""
        result = self.command("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
            "userGesture": True}, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            what = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"JavaScript error: {what}")
        return result["result"].get("value")

    @property
    def requests(self) -> list[str]:
        """Every URL this page and its workers asked for."""
        return [e["params"]["request"]["url"]
                for e in self.browser.events(self._sessions(), self._start)
                if e.get("method") == "Network.requestWillBeSent"]

    @property
    def errors(self) -> list[str]:
        """Uncaught exceptions, console errors and failed loads of this page and its workers."""
        found = []
        for e in self.browser.events(self._sessions(), self._start):
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                found.append(f"exception: {text}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", "")))
                                for a in params["args"])
                found.append(f"console.{params['type']}: {args}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"log ({entry.get('source')}): {entry.get('text')} "
                             f"{entry.get('url', '')}".strip())
        return found

    def screenshot(self, path_stem: str, tile_height: int = 2400) -> list[str]:
        """Save the whole page as PNG tiles ``<stem>-01.png``, ``-02``, ... of at most
        ``tile_height`` pixels each (one huge image would be hard to look at).

        The window is made one tile tall and scrolled down the page, so each capture
        paints one tile. Capturing beyond the viewport instead paints the whole page for
        every tile: 1 s a tile on the 138,000-pixel API page at phone width, and once on
        CI a tile that did not come back in 60 s. The header stays at the top of the
        window, as it does for a reader, so each tile starts where the last one's view
        ended below the header, and nothing is hidden under it.
        """
        self.command("Emulation.setDeviceMetricsOverride", {
            "width": self.width, "height": tile_height, "deviceScaleFactor": 1,
            "mobile": self.width < 600})
        try:
            height, header = self.evaluate("""(async () => {
                await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
                const header = document.querySelector("header");
                const fixed = header && ["sticky", "fixed"].includes(
                    getComputedStyle(header).position);
                return [document.documentElement.scrollHeight,
                        fixed ? Math.ceil(header.getBoundingClientRect().height) : 0];
            })()""")
            paths, top, step, last = [], 0, tile_height - header, -1
            while True:
                # where the browser really scrolled to: the last tile stops at the bottom,
                # which may lie short of height - tile_height (a scroll bar takes room)
                top = self.evaluate(f"""(async () => {{
                    window.scrollTo({{top: {top}, behavior: "instant"}});
                    await new Promise(r => requestAnimationFrame(
                        () => requestAnimationFrame(r)));
                    return window.scrollY;
                }})()""")
                if top <= last:
                    return paths
                last = top
                clip = {"x": 0, "y": top, "width": self.width,
                        "height": min(tile_height, height - top), "scale": 1}
                data = self.command("Page.captureScreenshot", {
                    "format": "png", "clip": clip}, timeout=60)["data"]
                path = f"{path_stem}-{len(paths) + 1:02d}.png"
                with open(path, "wb") as fh:
                    fh.write(base64.b64decode(data))
                paths.append(path)
                if top + tile_height >= height:
                    return paths
                top += step
        finally:
            self.command("Emulation.setDeviceMetricsOverride", {
                "width": self.width, "height": self.height, "deviceScaleFactor": 1,
                "mobile": self.width < 600})

    def close(self) -> None:
        try:
            self.browser.send("Target.closeTarget", {"targetId": self.target}, timeout=10)
            if self.context:
                self.browser.send("Target.disposeBrowserContext",
                                  {"browserContextId": self.context}, timeout=10)
        except CDPError:
            pass


def _high(fd: int) -> int:
    """``fd`` moved to a number above 10 (close-on-exec), so copying the child's ends onto
    3 and 4 can never land on one of ours."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved
