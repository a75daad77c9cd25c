"""Headless Chromium driven over the DevTools protocol (Debian's `chromium`), for the tests that use the web page
as a person would. No Playwright: a WebSocket and three CDP methods are all it takes."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [  # headless, and none of the background connections this closed network refuses
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",  # the microphone is allowed without asking...
    "--use-fake-device-for-media-stream",  # ...and it is a file
]


class Browser:
    """One headless Chromium with one page at `url`; the microphone plays `microphone` (a WAV file)."""

    def __init__(self, url: str, microphone: str | Path, size: tuple[int, int] = (1000, 900)) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="hygie-chromium-", ignore_cleanup_errors=True)
        args = [
            CHROMIUM,
            *FLAGS,
            f"--use-file-for-fake-audio-capture={microphone}",
            f"--window-size={size[0]},{size[1]}",
        ]
        args += [f"--user-data-dir={self.profile.name}", "--remote-debugging-port=0", url]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, start_new_session=True)
        browser_ws = None
        for line in self.proc.stderr:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
            if m := re.search(r"DevTools listening on (ws://\S+)", line):
                browser_ws = m.group(1)
                break
        if browser_ws is None:
            raise RuntimeError("chromium did not start")
        port = browser_ws.split(":")[2].split("/")[0]
        self.ws = connect(self._page_ws(port), max_size=None)
        self.id = 0

    def _page_ws(self, port: str) -> str:
        """The DevTools WebSocket of the page (waiting for it to exist)."""
        from urllib.request import urlopen

        for _ in range(100):
            pages = [t for t in json.load(urlopen(f"http://127.0.0.1:{port}/json/list")) if t["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise RuntimeError("chromium opened no page")

    def call(self, method: str, **params) -> dict:
        """One CDP command's result."""
        self.id += 1
        self.ws.send(json.dumps({"id": self.id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.id:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]

    def js(self, expression: str):
        """The value of a JavaScript expression in the page (awaited if a promise), as a user gesture."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True, userGesture=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 30.0):
        """Poll until a JavaScript expression is truthy (errors, as before the page has loaded, count as false)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if value := self.js(f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()"):
                return value
            time.sleep(0.2)
        raise TimeoutError(f"{expression} stayed false for {timeout} s; page stats: {self.js('JSON.stringify(hygie)')}")

    def screenshot(self, path: str | Path) -> None:
        """The page as a PNG file."""
        Path(path).write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        """Quit chromium and its helper processes (its own process group), and remove its profile."""
        self.ws.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        self.profile.cleanup()
