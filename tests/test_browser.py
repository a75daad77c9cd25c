"""The live page as a person uses it: `hygie serve` started as a command, the page opened in headless Chromium,
speech sent through its microphone button (a fake microphone playing a speech file) and through its text box;
frames must arrive in order, each with its audio, drawn when that audio plays."""

from __future__ import annotations

import numpy as np
import pytest
from cdp import CHROMIUM, Browser

from hygie_lib.io import HygieError
from hygie_lib.serve import serve_in_child

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def served(demo, tmp_path_factory):
    """`hygie serve` with the demo template: its URL and its log (a file: a pipe nobody reads would fill up and
    stop the server)."""
    args = ["--model", str(demo["model"]), "--backend", "torch", "--template", str(demo["template_video"])]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        try:
            with serve_in_child(args, out, timeout=60) as (_, url):
                yield url, log
        except HygieError as e:
            pytest.fail(f"{e}\n{log.read_text()[-3000:]}")


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
