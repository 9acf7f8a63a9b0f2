"""Headless Chromium driven through the Chrome DevTools Protocol (CDP) over one websocket.

Just what the UI test needs: open a page, run JavaScript, wait for a condition, take a screenshot.
The browser is Debian's ``/usr/bin/chromium`` (``make browser`` installs it), started with its own
profile in a temporary folder and ended by its process id.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class BrowserError(RuntimeError):
    pass


class Browser:
    """One Chromium with one page.

    :param profile_dir: an empty folder for the browser's profile (``--user-data-dir``).
    :param width: the page's width in CSS pixels (and the screenshot's).
    :param height: the page's height.
    """

    def __init__(self, profile_dir: Path, width: int = 1600, height: int = 1000) -> None:
        self.profile_dir = Path(profile_dir)
        self.width, self.height = width, height
        self.process: subprocess.Popen[bytes] | None = None
        self._ws: Any = None
        self._closing = contextlib.ExitStack()
        self._ids = itertools.count(1)

    def start(self, timeout: float = 30.0) -> Browser:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        log = (self.profile_dir / "chromium.log").open("wb")
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile_dir}", f"--window-size={self.width},{self.height}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        port = self._devtools_port(timeout)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [t for t in json.loads(answer.read()) if t.get("type") == "page"]
        if not pages:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/new?about:blank", timeout=10) as answer:
                pages = [json.loads(answer.read())]
        self._ws = self._closing.enter_context(
            connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        )
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        return self

    def _devtools_port(self, timeout: float) -> int:
        # Chromium writes the port it chose (for --remote-debugging-port=0) into its profile.
        marker = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrowserError(f"chromium exited ({self.process.returncode}); see {self.profile_dir}/chromium.log")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().splitlines()[0])
            time.sleep(0.1)
        raise BrowserError(f"chromium did not open its DevTools port in {timeout:.0f}s")

    def stop(self) -> None:
        self._closing.close()
        self._ws = None
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """Call a CDP method and return its result (events that arrive meanwhile are dropped)."""
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no answer to {method} within {timeout:.0f}s")
            message = json.loads(self._ws.recv(timeout=remaining))
            if message.get("id") != message_id:
                continue
            if "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            return dict(message.get("result") or {})

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", what=f"{url} to load")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"JavaScript failed: {result['exceptionDetails'].get('text')}: {expression[:200]}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, what: str | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None  # the page is navigating
            if value:
                return value
            time.sleep(0.25)
        raise BrowserError(f"timed out after {timeout:.0f}s waiting for {what or expression}")

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
