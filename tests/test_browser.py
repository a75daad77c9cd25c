"""The live page as a person uses it: `hygie serve` started as a command, the page opened in headless Chromium,
speech sent through its microphone button (a fake microphone playing a speech file) and through its text box;
frames must arrive in order, each with its audio, drawn when that audio plays."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from urllib.request import urlopen

import numpy as np
import pytest
from cdp import CHROMIUM, Browser

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(demo, tmp_path_factory):
    """`hygie serve` on a free localhost port, with the demo template; its URL. Its output goes to a file (a pipe
    nobody reads would fill up and stop the server)."""
    port = free_port()
    cmd = [sys.executable, "-m", "hygie_lib.cli", "serve", "--model", str(demo["model"]), "--backend", "torch"]
    cmd += ["--template", str(demo["template_video"]), "--port", str(port)]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            json.load(urlopen(f"{url}/templates"))
            break
        except OSError:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
    yield url, log
    proc.terminate()
    proc.wait(10)


def test_the_page_plays_the_microphone_and_the_text_box_as_a_talking_face(served, demo, tmp_path):
    url, log = served
    page = Browser(f"{url}/?connect", microphone=demo["audio"])
    try:
        page.wait("hygie.ready")
        assert page.js("document.getElementById('template').value") == "template_idle"
        page.js("document.getElementById('mic').click()")
        page.wait("hygie.frames >= 75 && hygie.peak > 0.05")  # the microphone's speech came back with the frames
        stats = page.js("hygie")
        assert stats["gaps"] == 0 and stats["errors"] == []  # in order, none lost
        assert stats["samples"] == stats["frames"] * 640  # each frame with its 40 ms of audio
        assert stats["drawn"] > 25  # drawn on the canvas as their audio plays
        page.js("document.getElementById('mic').click()")  # microphone off: silence
        page.js("document.getElementById('text').value = 'Hello from the text box'")
        page.js("document.getElementById('say').click()")
        page.wait(f"hygie.frames >= {stats['frames'] + 75}", timeout=60)
        page.js("const t = document.getElementById('template'); t.add(new Option('gone', 'nope')); t.value = 'nope'")
        page.js("document.getElementById('connect').click()")  # a template the server does not have
        assert "unknown template 'nope'" in page.wait("hygie.errors.join(' ')")
        page.screenshot(tmp_path / "page.png")
        assert (tmp_path / "page.png").stat().st_size > 10_000
        assert np.median(stats["latency"]) < 2000
    except Exception:
        print("hygie serve said:\n" + log.read_text()[-5000:])  # shown with the failure
        raise
    finally:
        page.close()
