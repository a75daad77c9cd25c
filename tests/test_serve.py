"""hygie serve: frames stream back with their audio at the pace of real time, silence keeps the face alive, bad
input gets a clear error without taking the server down, sessions are isolated and freed when they go."""

from __future__ import annotations

import asyncio
import json
import time
from typing import NamedTuple

import cv2
import numpy as np
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from hygie_lib.audio import load_audio
from hygie_lib.inference import MouthModel
from hygie_lib.io import HygieError
from hygie_lib.live import TemplateFrames
from hygie_lib.render import check_template_video
from hygie_lib.serve import FRAME_HEADER, FRAMES_HEADER, MAX_MESSAGE, Server, Template, serve_in_child

SR = 16000


def make_server(demo, **kwargs) -> Server:
    """A server of the demo's tiny model with its template, named "idle"."""
    model, video = MouthModel(demo["model"], backend="torch"), demo["template_video"]
    info, tpl = check_template_video(video), demo["template"]
    return Server(model, {"idle": Template(tpl, TemplateFrames.of(video, tpl), info.width, info.height)}, **kwargs)


@pytest.fixture(scope="module")
def server(demo):
    return make_server(demo, max_sessions=2)


def run(server: Server, scenario) -> object:
    """Run `scenario(client)` against the server's app on a free localhost port."""

    async def main():
        async with TestClient(TestServer(server.app())) as client:
            return await scenario(client)

    return asyncio.run(main())


class Frame(NamedTuple):
    index: int
    template: int
    latency_ms: int
    audio: np.ndarray  # int16
    origin: tuple[int, int]
    region: np.ndarray | None  # RGB


def parse(data: bytes) -> Frame:
    """A frame message."""
    _, k, t, latency, n, x0, y0 = FRAME_HEADER.unpack_from(data)
    at = FRAME_HEADER.size
    audio = np.frombuffer(data[at : at + 2 * n], "<i2")
    jpeg = np.frombuffer(data[at + 2 * n :], np.uint8)
    region = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1] if len(jpeg) else None
    return Frame(k, t, latency, audio, (x0, y0), region)


async def frames_for(ws, seconds: float, until=lambda frames: False) -> tuple[list, list[str]]:
    """Frame messages (parsed) and text messages received for `seconds`, or until `until(frames)`."""
    frames, texts = [], []
    end = asyncio.get_running_loop().time() + seconds
    while (left := end - asyncio.get_running_loop().time()) > 0 and not until(frames):
        try:
            msg = await ws.receive(timeout=left)
        except asyncio.TimeoutError:
            break
        if msg.type == WSMsgType.BINARY:
            frames.append(parse(msg.data))
        elif msg.type == WSMsgType.TEXT:
            texts.append(msg.data)
        else:
            break
    return frames, texts


def test_speech_comes_back_as_frames_with_their_audio_in_real_time(server, demo):
    speech = load_audio(demo["audio"], SR)[: SR * 2]
    pcm = (speech * 32767).astype("<i2").tobytes()

    async def scenario(client):
        ws = await client.ws_connect("/live?template=idle")
        ready = (await ws.receive_json())["ready"]
        await ws.send_bytes(pcm)  # 2 s at once: the server plays it in real time
        t0 = asyncio.get_running_loop().time()
        frames, texts = await frames_for(ws, 20, until=lambda f: len(f) >= 60)
        took = asyncio.get_running_loop().time() - t0
        await ws.close()
        return ready, frames, texts, took

    ready, frames, texts, took = run(server, scenario)
    assert ready["fps"] == 25 and ready["sr"] == SR and texts == []
    ks = [f.index for f in frames]
    assert ks == list(range(60)) and took > 60 / 25 - 0.5  # in order, none lost, no faster than real time
    assert all(len(f.audio) == SR // 25 for f in frames)
    heard, sent = np.concatenate([f.audio for f in frames]), np.frombuffer(pcm, "<i2")
    n = min(len(heard), len(sent))
    np.testing.assert_array_equal(heard[:n], sent[:n])  # each frame carries the very audio it was drawn from
    assert [f.template for f in frames[48:52]] == [48, 49, 48, 47]  # the 50-frame template, back and forth
    region, (x0, y0) = frames[0].region, frames[0].origin
    assert 0 < x0 < x0 + region.shape[1] < ready["width"] and 0 < y0 < y0 + region.shape[0] < ready["height"]


def test_silence_keeps_the_face_moving_and_text_is_spoken(server):
    async def scenario(client):
        ws = await client.ws_connect("/live?template=idle")
        await ws.receive_json()
        idle, _ = await frames_for(ws, 20, until=lambda f: len(f) >= 15)  # nothing sent: silence
        await ws.send_str(json.dumps({"say": "Hello there"}))
        spoken, texts = await frames_for(ws, 20, until=lambda f: any(np.abs(x.audio).max() > 3000 for x in f))
        await ws.close()
        return idle, spoken, texts

    idle, spoken, texts = run(server, scenario)
    assert len(idle) == 15 and all(not f.audio.any() for f in idle)
    assert [f.template for f in idle] == list(range(15))  # the template plays on
    assert texts == [] and max(np.abs(f.audio).max() for f in spoken) > 3000  # the TTS speech came back


def test_bad_input_gets_an_error_and_the_session_goes_on(server):
    async def scenario(client):
        errors = []
        ws = await client.ws_connect("/live?template=nope")
        errors.append((await ws.receive_json())["error"])
        assert (await ws.receive()).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        ws = await client.ws_connect("/live?template=idle")
        await ws.receive_json()
        await ws.send_bytes(b"\x01\x02\x03")  # not whole 16-bit samples
        await ws.send_str("not json")
        await ws.send_str(json.dumps({"shout": 1}))
        await ws.send_str(json.dumps({"say": "hi", "voice": "xx-none"}))
        frames, texts = await frames_for(ws, 20, until=lambda f: len(f) >= 25)
        errors += [json.loads(t)["error"] for t in texts]
        big = await client.ws_connect("/live?template=idle")
        await big.receive_json()
        await big.send_bytes(b"\0" * (MAX_MESSAGE + 2))  # too large: that connection is closed, not the server
        closed = await frames_for(big, 5.0)
        later, _ = await frames_for(ws, 20, until=lambda f: len(f) >= 5)
        await ws.close()
        return errors, frames, later, closed, big.close_code

    errors, frames, later, _, close_code = run(server, scenario)
    assert "unknown template 'nope'" in errors[0]
    assert any("not a whole number of samples" in e for e in errors)
    assert any("must be JSON" in e for e in errors) and any("unknown command" in e for e in errors)
    assert any("no voice 'xx-none'" in e for e in errors)
    assert len(frames) == 25 and len(later) == 5  # the session went on through it all
    assert close_code == 1009  # message too big


def test_sessions_are_limited_and_freed_on_disconnect(server):
    async def scenario(client):
        a = await client.ws_connect("/live?template=idle")
        b = await client.ws_connect("/live?template=idle")
        await a.receive_json(), await b.receive_json()
        full = await client.ws_connect("/live?template=idle")
        refused = (await full.receive_json())["error"]
        busy = (await (await client.get("/templates")).json())["sessions"]
        await a.close()
        await b.close()
        for _ in range(50):
            if server.sessions == 0:
                break
            await asyncio.sleep(0.1)
        page = await (await client.get("/")).text()
        frames = await (await client.get("/frames?template=idle")).read()
        missing = (await client.get("/frames?template=nope")).status
        return refused, busy, server.sessions, page, frames, missing

    refused, busy, after, page, frames, missing = run(server, scenario)
    assert "full (2 sessions)" in refused and busy == 2 and after == 0
    assert "<canvas" in page and "/live?template=" in page
    magic, n = FRAMES_HEADER.unpack_from(frames)
    sizes = np.frombuffer(frames[FRAMES_HEADER.size : FRAMES_HEADER.size + 4 * n], "<u4")
    assert magic == b"HYGT" and n == 50 and len(frames) == FRAMES_HEADER.size + 4 * n + sizes.sum()
    first = np.frombuffer(frames[FRAMES_HEADER.size + 4 * n :][: sizes[0]], np.uint8)
    assert cv2.imdecode(first, cv2.IMREAD_COLOR).shape[:2] == (512, 512) and missing == 404


def test_load_several_sessions_at_once_each_get_their_own_frames(demo):
    """A bounded load test: 4 sessions at once, 2 s of speech each, distinct audio per session; every session gets
    its frames in order, each carrying its own audio back (isolation), within a time limit."""
    server = make_server(demo)
    speech = (load_audio(demo["audio"], SR)[: SR * 2] * 32767).astype("<i2")

    async def one(client, i: int):
        ws = await client.ws_connect("/live?template=idle")
        await ws.receive_json()
        mine = (speech // (i + 1)).astype("<i2")  # each session its own loudness
        await ws.send_bytes(mine.tobytes())
        frames, texts = await frames_for(ws, 30, until=lambda f: len(f) >= 40)
        await ws.close()
        return mine, frames, texts

    async def scenario(client):
        t0 = asyncio.get_running_loop().time()
        out = await asyncio.gather(*(one(client, i) for i in range(4)))
        return out, asyncio.get_running_loop().time() - t0

    runs, took = run(server, scenario)
    assert took < 30
    for mine, frames, texts in runs:
        assert texts == [] and [f.index for f in frames] == list(range(40))
        np.testing.assert_array_equal(np.concatenate([f.audio for f in frames])[: len(mine)], mine[: 40 * SR // 25])


def test_a_server_that_cannot_start_is_reported_not_waited_for(tmp_path):
    args = ["--model", str(tmp_path / "missing.pt"), "--template", str(tmp_path / "missing.mp4")]
    t = time.monotonic()
    with pytest.raises(HygieError, match="exited with code 2 before it answered"):
        with serve_in_child(args, timeout=60):
            pass
    assert time.monotonic() - t < 30
