"""`hygie serve`: live talking heads over WebSocket, and the page that plays them (hygie_lib/web/index.html).

A client first fetches a template's frames, `/frames?template=NAME` (FRAMES_HEADER: b"HYGT" and the count, each
JPEG's size, then the JPEGs), then opens one WebSocket per session at /live?template=NAME. The server says
`{"ready": {...}}` (frame rate, sample rate, size, the model's lookahead); the client sends speech as binary
messages of 16-bit little-endian mono PCM at that sample rate, any size up to MAX_MESSAGE, or text messages:
`{"say": "text", "voice": "en-us"}` (spoken by the offline TTS). Audio is played into the session at the pace of
real time: what comes faster (a file, a sentence) waits its turn, and when nothing comes for JITTER seconds the
server plays silence, so the template stays alive with its mouth closed. Each frame goes back as one binary
message: FRAME_HEADER (b"F", frame index, template frame, the frame's latency in ms, its sample count, the mouth
region's origin), its audio (int16) and the mouth region as JPEG (empty: show the template frame as it is). Bad
input gets `{"error": ...}` and the session goes on; a session that disconnects frees what it held.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.request import urlopen

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from hygie_lib.crops import Crops
from hygie_lib.inference import MouthModel
from hygie_lib.io import HygieError
from hygie_lib.live import LiveSession, TemplateFrames
from hygie_lib.render import check_template_video

FRAME_HEADER = struct.Struct("<cIIHIHH")  # b"F", frame index, template frame, latency (ms), samples, region x, y
FRAMES_HEADER = struct.Struct("<4sI")  # b"HYGT", number of template frames (then their JPEG sizes, uint32 each)
MAX_MESSAGE = 1 << 20  # bytes: 32 s of 16 kHz audio per message at most
MAX_PENDING = 600.0  # seconds of speech a session may queue ahead of real time
JPEG_QUALITY = 90  # of the mouth regions sent
JITTER = 0.1  # seconds a client's audio may come early or late: later, silence fills in (and delays what follows)
PAGE = Path(__file__).parent / "web" / "index.html"


@dataclass(frozen=True)
class Template:
    """A template a client may pick: its prepared crops, its frames decoded once, its size."""

    crops: Crops
    frames: TemplateFrames
    width: int
    height: int


class Timeline:
    """When each stretch of a session's audio went in (the clock of its arrival), to time each frame's latency."""

    def __init__(self) -> None:
        self.marks: deque[tuple[int, float]] = deque()  # (samples pushed after this stretch, when it was pushed)

    def add(self, end: int, when: float) -> None:
        """The audio up to sample `end` went in at `when`."""
        self.marks.append((end, when))

    def arrival(self, sample: int) -> float:
        """When the audio at `sample` went in; forgets the stretches before it."""
        while len(self.marks) > 1 and self.marks[0][0] <= sample:
            self.marks.popleft()
        return self.marks[0][1]


class Server:
    """The live server: one model, named templates, any number of sessions up to `max_sessions`."""

    def __init__(
        self,
        model: MouthModel,
        templates: dict[str, Template],
        *,
        blend: str = "feather",
        quality: int = JPEG_QUALITY,
        max_sessions: int = 8,
    ) -> None:
        self.model, self.templates, self.blend, self.quality = model, templates, blend, quality
        self.max_sessions, self.sessions = max_sessions, 0

    def app(self) -> web.Application:
        """The aiohttp application: the page, the template list and the live WebSocket."""
        app = web.Application(client_max_size=MAX_MESSAGE)
        app.router.add_get("/", self.page)
        app.router.add_get("/templates", self.list_templates)
        app.router.add_get("/frames", self.template_frames)
        app.router.add_get("/live", self.live)
        return app

    async def page(self, request: web.Request) -> web.Response:
        """The web page."""
        return web.FileResponse(PAGE)

    async def list_templates(self, request: web.Request) -> web.Response:
        """The templates a client may pick, with their sizes."""
        out = {name: {"width": t.width, "height": t.height} for name, t in self.templates.items()}
        return web.json_response({"templates": out, "sessions": self.sessions, "max_sessions": self.max_sessions})

    async def template_frames(self, request: web.Request) -> web.Response:
        """A template's frames for the client: FRAMES_HEADER, each JPEG's size, the JPEGs."""
        name = request.query.get("template", "")
        if name not in self.templates:
            raise web.HTTPNotFound(text=f"unknown template {name!r}; one of: {', '.join(self.templates)}.")
        jpegs = self.templates[name].frames.jpegs
        sizes = np.array([len(j) for j in jpegs], "<u4").tobytes()
        return web.Response(body=FRAMES_HEADER.pack(b"HYGT", len(jpegs)) + sizes + b"".join(jpegs))

    async def live(self, request: web.Request) -> web.WebSocketResponse:
        """One live session, from its WebSocket's opening to its closing."""
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=20)
        await ws.prepare(request)
        name = request.query.get("template", "")
        if name not in self.templates:
            await _close_with(ws, f"unknown template {name!r}; one of: {', '.join(self.templates)}.")
            return ws
        if self.sessions >= self.max_sessions:
            await _close_with(ws, f"the server is full ({self.max_sessions} sessions); try again later.")
            return ws
        self.sessions += 1
        # the session's own thread: its work runs in order, beside other sessions' and the event loop
        worker = ThreadPoolExecutor(1, thread_name_prefix="hygie-session")
        try:
            t = self.templates[name]
            session = LiveSession(self.model, t.crops, t.frames, name=name, blend=self.blend)
            d = self.model.data
            ready = {"fps": d.fps, "sr": d.sr, "width": t.width, "height": t.height, "lookahead": self.model.lookahead}
            await ws.send_json({"ready": ready})
            await self._run(ws, session, worker)
        finally:
            self.sessions -= 1
            worker.shutdown(wait=False)
        return ws

    async def _run(self, ws: web.WebSocketResponse, session: LiveSession, worker: ThreadPoolExecutor) -> None:
        """Read the client's messages while pacing its audio into the session and sending the frames back."""
        loop, sr, fps = asyncio.get_running_loop(), session.sr, session.fps
        pending: deque[np.ndarray] = deque()  # audio waiting for its turn
        arrived = asyncio.Event()  # wakes the pacing loop as audio comes in
        queued = [0]  # samples in `pending`
        timeline, start, jitter = Timeline(), time.monotonic(), int(JITTER * sr)
        pushed = 0

        async def read() -> None:
            async for msg in ws:
                try:
                    if msg.type == WSMsgType.BINARY:
                        audio = pcm_of(msg.data)
                    elif msg.type == WSMsgType.TEXT:
                        audio = await loop.run_in_executor(worker, self._command, msg.data, sr)
                    else:
                        continue
                    if queued[0] + len(audio) > MAX_PENDING * sr:
                        raise HygieError(f"more than {MAX_PENDING:.0f} s of speech queued; wait for it to play.")
                    pending.append(audio)
                    queued[0] += len(audio)
                    arrived.set()
                except HygieError as e:
                    await ws.send_json({"error": str(e)})
                except Exception as e:  # noqa: BLE001 - a bug must not end the session; it is logged and reported
                    traceback.print_exc()
                    await ws.send_json({"error": f"internal error ({type(e).__name__}: {e}); the server log has more."})

        reader = asyncio.create_task(read())
        try:
            while not reader.done() and not ws.closed:
                arrived.clear()  # audio that comes while this round works wakes the next at once
                due = int((time.monotonic() - start) * sr) - pushed  # samples real time has moved on since
                chunk = _take(pending, max(0, due + jitter))  # a client may run a little ahead of this clock
                queued[0] -= len(chunk)
                if due - len(chunk) > jitter:  # nothing to say for a while: silence keeps the template alive
                    chunk = np.concatenate([chunk, np.zeros(due - len(chunk), np.float32)])
                if len(chunk):
                    pushed += len(chunk)
                    timeline.add(pushed, time.monotonic())
                    for m in await loop.run_in_executor(worker, self._frames, session, chunk, timeline):
                        await ws.send_bytes(m)
                try:  # until audio comes, or half a frame passes (the clock of silence)
                    await asyncio.wait_for(arrived.wait(), 0.5 / fps)
                except asyncio.TimeoutError:
                    pass
        except (ConnectionResetError, RuntimeError):  # the client went away mid-send
            pass
        finally:
            reader.cancel()

    def _frames(self, session: LiveSession, chunk: np.ndarray, timeline: Timeline) -> list[bytes]:
        """The frame messages for a chunk of audio (in a worker thread): each mouth region as JPEG, with its audio."""
        messages = []
        for f in session.push(chunk):
            region = b"" if f.region is None else jpeg(f.region, self.quality)
            latency = time.monotonic() - timeline.arrival(round(f.index * session.sr / session.fps))
            pcm = np.clip(np.round(f.audio * 32768), -32768, 32767).astype("<i2").tobytes()  # pcm_of's inverse
            ms = min(65535, round(latency * 1000))
            messages.append(FRAME_HEADER.pack(b"F", f.index, f.template, ms, len(f.audio), *f.origin) + pcm + region)
        return messages

    def _command(self, text: str, sr: int) -> np.ndarray:
        """A client's JSON command -> the audio it asks for (worker thread)."""
        from hygie_lib.tts import speak

        try:
            cmd = json.loads(text)
        except json.JSONDecodeError as e:
            raise HygieError(f'a text message must be JSON, like {{"say": "hello"}} ({e}).') from e
        if not isinstance(cmd, dict) or not isinstance(cmd.get("say"), str):
            raise HygieError('unknown command; send {"say": "text", "voice": "en-us"} or binary PCM.')
        y, tts_sr = speak(cmd["say"], voice=str(cmd.get("voice", "en-us")))
        return resample(y, tts_sr, sr)


def jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """An RGB image as JPEG bytes."""
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def pcm_of(data: bytes) -> np.ndarray:
    """16-bit little-endian mono PCM bytes -> float32 samples; a HygieError for a byte count that is not even."""
    if len(data) % 2:
        raise HygieError(f"binary messages are 16-bit PCM: {len(data)} bytes is not a whole number of samples.")
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def resample(y: np.ndarray, sr: int, to: int) -> np.ndarray:
    """Mono audio at `sr` resampled to `to` (soxr, through librosa)."""
    import librosa

    return y if sr == to else librosa.resample(y, orig_sr=sr, target_sr=to).astype(np.float32)


def _take(pending: deque[np.ndarray], n: int) -> np.ndarray:
    """Up to n samples off the front of `pending`."""
    out, got = [], 0
    while pending and got < n:
        head = pending.popleft()
        if got + len(head) > n:
            head, rest = head[: n - got], head[n - got :]
            pending.appendleft(rest)
        out.append(head)
        got += len(head)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


async def _close_with(ws: web.WebSocketResponse, error: str) -> None:
    """Tell the client what is wrong, then close."""
    await ws.send_json({"error": error})
    await ws.close()


def load_templates(paths: list[str | os.PathLike], model: MouthModel) -> dict[str, Template]:
    """Templates by name (the file's stem), prepared with the model's crop settings and decoded once."""
    from hygie_lib.render import prepare_template

    out = {}
    for path in map(Path, paths):
        info = check_template_video(path)
        crops = prepare_template(path, model.data)
        model.check_crops(crops, path)
        out[path.stem] = Template(crops, TemplateFrames.of(path, crops), info.width, info.height)
    return out


@contextmanager
def serve_in_child(
    args: list[str], out: IO | int = subprocess.DEVNULL, timeout: float = 120.0
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`hygie serve ARGS` in a child process on a free localhost port, its output to `out`: (the process, its URL)
    once it answers; stopped on leaving."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "hygie_lib.cli", "serve", *args, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=out, stderr=None if out == subprocess.DEVNULL else subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout
    try:
        while True:
            try:
                urlopen(f"{url}/templates", timeout=5).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise HygieError(f"`hygie serve` exited with code {proc.returncode} before it answered.") from None
                if time.monotonic() > deadline:
                    raise HygieError(f"`hygie serve` did not answer in {timeout:.0f} s.") from None
                time.sleep(0.1)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
