"""Live: latency, frame rate, A/V sync, memory and capacity of `hygie serve` at 720p on this machine.

Inputs are benchmarks/render.py's: the demo template upscaled to 1280x720, speech tiled to length, and a model
(--model, else an untrained one of params.yaml's config at --size px: speed does not depend on the weights). The
server runs as its own process (`hygie serve`), as a user runs it; clients in this process send speech over
localhost WebSockets in real time, --chunk-ms at a time, as a microphone does. For every frame:
  latency   when the frame arrived - when the chunk holding the audio at the frame's instant was sent (so the
            audio the model must hear past the frame, `model.lookahead`, is included);
  A/V       the audio a frame carries against the audio sent at its index: any drift shows as a sample offset.
  1. Before the server starts: what sending a frame costs each way (mouth region as JPEG, whole frame as JPEG or
     H.264 as WebRTC and MSE would): encoding time, size, frames the encoder holds back.
  2. One session for --seconds (600 for the 10-minute check): latency median/p95, frames/s delivered, A/V offset
     over the whole session, the server's memory (RSS) at the start and after each minute.
  3. --sessions N at once (each for --load-seconds): real time while every session gets >= 24 frames/s with p95
     latency <= 300 ms.
--screenshot PATH: the page in headless Chromium (Debian's chromium) playing the speech through its microphone.
--sync MODEL (a model trained on the demo speaker, e.g. `make demo`'s models/best.pt): the mouth against the audio
  over a long session, no server: a LiveSession fed the demo's new audio (data/raw, tiled to --seconds) 20 ms at a
  time; the first and the last minute of its frames, composed, written to a video and read by FaceMesh; their
  mouth aperture against the demo speaker's ground truth: correlation and lag (0 = in sync; equal = no drift).
Usage: python benchmarks/live.py [--model M | --size 128] [--seconds 60] [--chunk-ms 20] [--sessions 1 2 3]
       [--load-seconds 20] [--blend feather] [--screenshot PATH] [--sync MODEL]
       (needs the demo template: `hygie demo-data`)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import aiohttp
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the headless Chromium driver of the browser test

from render import make_inputs  # noqa: E402

from hygie_lib.audio import load_audio  # noqa: E402
from hygie_lib.audio2shape import LIVE_LEAD  # noqa: E402
from hygie_lib.blend import BLENDS  # noqa: E402
from hygie_lib.crops import Crops  # noqa: E402
from hygie_lib.inference import MouthModel  # noqa: E402
from hygie_lib.landmarks import detect_video  # noqa: E402
from hygie_lib.live import LiveFrame, LiveSession, TemplateFrames  # noqa: E402
from hygie_lib.metrics import mouth_aperture, sync  # noqa: E402
from hygie_lib.render import prepare_template  # noqa: E402
from hygie_lib.serve import FRAME_HEADER, JPEG_QUALITY, jpeg, serve_in_child  # noqa: E402
from hygie_lib.video import VideoWriter  # noqa: E402


async def session(url: str, speech: np.ndarray, seconds: float, chunk_ms: float) -> dict:
    """One client: sends `seconds` of speech in real time; per-frame latency and A/V offset, frames/s."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        ready = (await ws.receive_json())["ready"]
        sr, fps = ready["sr"], ready["fps"]
        step = round(sr * chunk_ms / 1000)
        n_chunks = int(seconds * sr) // step
        sent = np.zeros(n_chunks)  # when each chunk went
        pcm = (speech[: n_chunks * step] * 32767).astype("<i2")

        async def send() -> None:
            t0 = time.monotonic()
            for i in range(n_chunks):  # as a microphone: each chunk once it has been heard
                await asyncio.sleep(max(0.0, t0 + (i + 1) * chunk_ms / 1000 - time.monotonic()))
                sent[i] = time.monotonic()
                await ws.send_bytes(pcm[i * step : (i + 1) * step].tobytes())

        sender = asyncio.create_task(send())
        latency, offsets, first, last, region = [], [], None, None, 0
        n_frames = int(n_chunks * step / sr * fps) - int(np.ceil(ready["lookahead"] * fps)) - 1
        while len(latency) < n_frames:
            msg = await ws.receive(timeout=30)
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise RuntimeError(f"server said {msg.data!r}")
            now = time.monotonic()
            _, k, _, _, n, _, _ = FRAME_HEADER.unpack_from(msg.data)
            audio = np.frombuffer(msg.data[FRAME_HEADER.size : FRAME_HEADER.size + 2 * n], "<i2")
            at = round(k * sr / fps)
            latency.append(now - sent[min(at // step, n_chunks - 1)])
            offsets.append(_offset(audio, pcm, at))
            region = max(region, len(msg.data) - FRAME_HEADER.size - 2 * n)
            first, last = first or now, now
        await sender
    lat = np.array(latency) * 1000
    return {
        "frames": len(lat),
        "fps": (len(lat) - 1) / (last - first),
        "median_ms": float(np.median(lat)),
        "p95_ms": float(np.percentile(lat, 95)),
        "max_av_offset_samples": int(np.max(np.abs(offsets))),
        "lookahead_ms": ready["lookahead"] * 1000,
        "region_kb": region / 1000,
    }


async def watching_memory(pid: int, work) -> tuple[dict, list[float]]:
    """`work` awaited, and a process's memory (MB) at its start, after each minute of it and at its end."""
    memory = []

    async def watch() -> None:
        while True:
            memory.append(rss_mb(pid))
            await asyncio.sleep(60)

    watcher = asyncio.create_task(watch())
    result = await work
    watcher.cancel()
    return result, [*memory, rss_mb(pid)]


def _offset(audio: np.ndarray, sent: np.ndarray, at: int) -> int:
    """Where a frame's audio matches what was sent, relative to its index (0 = in sync; 9999 = not found)."""
    for shift in (0, *[s for d in range(1, 161) for s in (d, -d)]):
        a = at + shift
        if a >= 0 and np.array_equal(sent[a : a + len(audio)], audio):
            return shift
    return 9999


def rss_mb(pid: int) -> float:
    """A process's resident memory, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sync_check(model_path: str, seconds: float, chunk_ms: float, work: Path) -> None:
    """The A/V sync of a long live session: aperture against ground truth in its first and last minute."""
    import pandas as pd

    raw = ROOT / "data" / "raw"
    model = MouthModel(model_path, lead=LIVE_LEAD)
    fps, sr, video = model.data.fps, model.data.sr, raw / "template_idle.mp4"
    tpl = prepare_template(video, model.data)
    frames = TemplateFrames.of(video, tpl)
    speech = load_audio(raw / "new_audio.wav", sr)
    truth = pd.read_parquet(raw / "demo_truth.parquet").query("clip == 'new_audio'").sort_values("frame")
    if len(speech) != round(len(truth) * sr / fps):
        sys.exit(f"{raw}: new_audio.wav is not a whole number of frames long; remake it with `hygie demo-data`.")
    reps = int(np.ceil(seconds * sr / len(speech)))
    audio, openness = np.tile(speech, reps)[: int(seconds * sr)], np.tile(truth["openness"].to_numpy(), reps)
    n = int(seconds * fps) - int(np.ceil(model.lookahead * fps)) - 1  # the frames the audio completes
    minute = min(int(60 * fps), n // 2)  # frames in a "minute" (shorter sessions: half each)
    kept = {k: i for i, k in enumerate([*range(minute), *range(n - minute, n)])}
    session = LiveSession(model, tpl, frames, blend="feather")
    step, t = round(sr * chunk_ms / 1000), time.perf_counter()
    h, w = cv2.imdecode(np.frombuffer(frames.jpegs[0], np.uint8), cv2.IMREAD_COLOR).shape[:2]
    memory = {}  # MB after each minute of the session
    with VideoWriter(work / "sync.mp4", fps, w, h) as out:
        for i in range(0, len(audio), step):
            for f in session.push(audio[i : i + step]):
                if f.index in kept:
                    out.write(compose(frames, f))
                if f.index % int(60 * fps) == 0:
                    memory[f.index // int(60 * fps)] = rss_mb(os.getpid())
    print(f"\nsync check: {seconds:.0f} s live session made in {time.perf_counter() - t:.0f} s")
    print("  memory (MB) at each minute: " + ", ".join(f"{m:.0f}" for m in memory.values()))
    ap = mouth_aperture(detect_video(work / "sync.mp4", fps, progress=False))
    for name, ks in (("first minute", range(minute)), ("last minute", range(n - minute, n))):
        corr, lag = sync(ap[[kept[k] for k in ks]], openness[list(ks)])
        print(f"  {name} (frames {ks.start}-{ks.stop - 1}): aperture vs ground truth r = {corr:.3f}, lag {lag} frames")


def compose(frames: TemplateFrames, f: LiveFrame) -> np.ndarray:
    """A live frame as the page draws it: its template frame, the mouth region over it."""
    frame = cv2.imdecode(np.frombuffer(frames.jpegs[f.template], np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy()
    if f.region is not None:
        (x0, y0), (h, w) = f.origin, f.region.shape[:2]
        frame[y0 : y0 + h, x0 : x0 + w] = f.region
    return frame


def transport(inputs: dict[str, str], seconds: float = 10.0) -> None:
    """What sending one live frame costs, each way the server could send it: the mouth region as JPEG (what `hygie
    serve` sends), the whole frame as JPEG, the whole frame as H.264 (libx264, ultrafast, zerolatency: the codec
    of WebRTC or MSE). Encoding time per frame, size per frame, and the frames the encoder holds back."""
    import av

    model, tpl = MouthModel(inputs["model"], lead=LIVE_LEAD), Crops.load(inputs["crops"])
    frames = TemplateFrames.of(inputs["template"], tpl)
    session = LiveSession(model, tpl, frames, blend="feather")
    live = [*session.push(load_audio(inputs["audio"], model.data.sr)[: int(seconds * model.data.sr)]), *session.flush()]
    whole = [compose(frames, f) for f in live]
    h, w = whole[0].shape[:2]
    h264 = av.CodecContext.create("libx264", "w")
    h264.width, h264.height, h264.pix_fmt, h264.time_base = w, h, "yuv420p", Fraction(1, round(model.data.fps))
    h264.options = {"preset": "ultrafast", "tune": "zerolatency"}

    def encode_h264(i: int, rgb: np.ndarray) -> int:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets = h264.encode(frame)
        return sum(p.size for p in packets) if packets else -1  # -1: held back

    ways = {
        "mouth region, JPEG": lambda i: len(jpeg(live[i].region, JPEG_QUALITY)) if live[i].region is not None else 0,
        "whole frame, JPEG": lambda i: len(jpeg(whole[i], JPEG_QUALITY)),
        "whole frame, H.264": lambda i: encode_h264(i, whole[i]),
    }
    print(f"\nsending a {w}x{h} live frame ({len(live)} frames of one session, JPEG quality {JPEG_QUALITY}):")
    print(f"{'way':>22}{'encode ms (median)':>20}{'kB per frame':>14}{'frames held back':>18}")
    for name, encode in ways.items():
        ms, size = [], []
        for i in range(len(live)):
            t = time.perf_counter()
            size.append(encode(i))
            ms.append((time.perf_counter() - t) * 1000)
        held = sum(s < 0 for s in size)
        print(f"{name:>22}{np.median(ms):>20.1f}{np.mean([s for s in size if s >= 0]) / 1000:>14.1f}{held:>18}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: an untrained model of params.yaml's config)")
    ap.add_argument("--size", type=int, default=128, help="IMG_SIZE of the untrained model (default: 128)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the single session")
    ap.add_argument("--chunk-ms", type=float, default=20.0, help="audio per message, as a microphone sends it")
    ap.add_argument("--blend", choices=list(BLENDS), default="feather", help="the server's paste-back")
    ap.add_argument("--sessions", type=int, nargs="*", default=[1, 2, 3], help="concurrent sessions to try")
    ap.add_argument("--load-seconds", type=float, default=20.0)
    ap.add_argument("--screenshot", type=Path, help="write the page, playing, to this PNG")
    ap.add_argument("--sync", metavar="MODEL", help="only the A/V sync check, with this demo-speaker model")
    args = ap.parse_args()
    if not (ROOT / "data" / "raw" / "template_idle.mp4").is_file():
        sys.exit("data/raw/template_idle.mp4: not found. Run `hygie demo-data` first.")
    if args.sync:
        with tempfile.TemporaryDirectory() as tmp:
            sync_check(args.sync, args.seconds, args.chunk_ms, Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        longest = max(args.seconds, args.load_seconds)
        inputs = make_inputs(Path(tmp), args.model, longest + 5, args.size)
        speech = load_audio(inputs["audio"], 16000)
        transport(inputs)
        serve_args = ["--model", inputs["model"], "--template", inputs["template"], "--blend", args.blend]
        serve_args += ["--max-sessions", "16"]
        with serve_in_child(serve_args) as (server, base):
            url = f"{base}/live?template={Path(inputs['template']).stem}"
            one, memory = asyncio.run(watching_memory(server.pid, session(url, speech, args.seconds, args.chunk_ms)))
            print(
                f"\none session, {args.seconds:.0f} s at 1280x720, {args.chunk_ms:.0f} ms chunks: latency median "
                f"{one['median_ms']:.0f} ms, p95 {one['p95_ms']:.0f} ms (lookahead {one['lookahead_ms']:.0f} ms); "
                f"{one['fps']:.2f} frames/s; A/V offset at most {one['max_av_offset_samples']} samples over "
                f"{one['frames']} frames; mouth regions up to {one['region_kb']:.0f} kB; server memory (MB) at the "
                f"start and after each minute: {' '.join(f'{mb:.0f}' for mb in memory)}"
            )
            print(f"\n{'sessions':>8}{'frames/s (worst)':>18}{'median ms':>11}{'p95 ms (worst)':>16}  real time")
            for n in args.sessions:

                async def many(n=n):
                    return await asyncio.gather(
                        *(session(url, speech, args.load_seconds, args.chunk_ms) for _ in range(n))
                    )

                runs = asyncio.run(many())
                fps, p95 = min(r["fps"] for r in runs), max(r["p95_ms"] for r in runs)
                med = np.median([r["median_ms"] for r in runs])
                print(f"{n:>8}{fps:>18.2f}{med:>11.0f}{p95:>16.0f}  {'yes' if fps >= 24 and p95 <= 300 else 'no'}")
            if args.screenshot:
                from cdp import Browser

                page = Browser(f"{base}/?connect", microphone=inputs["audio"], size=(1360, 1000))
                try:
                    page.wait("hygie.ready")
                    page.js("document.getElementById('mic').click()")
                    page.wait("hygie.drawn > 100")
                    page.screenshot(args.screenshot)
                finally:
                    page.close()
                print(f"\n{args.screenshot}: the page, playing")


if __name__ == "__main__":
    main()
