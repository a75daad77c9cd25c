"""Live: a talking head driven by audio as it arrives, the engine of `hygie serve`.

A `LiveSession` holds one model and one template, decoded once into `TemplateFrames`: every frame as JPEG for the
client, and its mouth region (losslessly) for the server. Mono PCM goes in, in chunks of any size; out come
`LiveFrame`s: which template frame to show, and the mouth region to draw over it, with the audio it shows. Only
that region is made and sent: the client keeps the template's frames, so the server neither decodes nor encodes
whole frames. The log-mel (`MelStream`) and what the model hears (its `condition_stream`) are computed as the
audio arrives, and a frame is drawn once the audio `model.lookahead` seconds past it is in: that is the least
latency: `hygie serve` loads its model with `lead=LIVE_LEAD`, so its mouths open as speech starts, not before it as a
render's do. The mouths are pasted by `render`'s `Painter`, from the same numbers whatever the chunk sizes, so a
session fed a file gives, region for region, the frames `render` writes with that model (a test). With no speech the
mouth closes and the template keeps playing (ping-pong): a server feeds silence when nothing comes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from hygie_lib.crops import Crops, box_roi
from hygie_lib.inference import MouthModel
from hygie_lib.io import HygieError
from hygie_lib.render import Painter, pingpong_index
from hygie_lib.video import iter_frames

PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # the mouth regions kept in memory: lossless, quick to decode


@dataclass(frozen=True)
class TemplateFrames:
    """A template decoded once, for any number of sessions: its frames as JPEG (what clients draw) and, for frames
    with a face, the mouth region (`box_roi` of its box, to whole 16-px blocks) as PNG with its top-left corner
    (what the server paints)."""

    jpegs: list[bytes]
    regions: list[bytes | None]
    origins: np.ndarray  # [n, 2] int (x, y)

    @classmethod
    def of(cls, video: str | os.PathLike, crops: Crops, quality: int = 90) -> TemplateFrames:
        """Decode `video` (prepared as `crops`) once."""
        jpegs, regions, origins = [], [], np.zeros((len(crops.crops), 2), np.int64)
        for i, frame in zip(range(len(crops.crops)), iter_frames(video, crops.fps)):
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            jpegs.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
            if not crops.face[i]:
                regions.append(None)
                continue
            x0, y0, x1, y1 = box_roi(crops.boxes[i], *frame.shape[:2])
            # widened to whole JPEG blocks (16 px), so the client's frame and the region share their block edges
            h, w = frame.shape[:2]
            x0, y0, x1, y1 = x0 // 16 * 16, y0 // 16 * 16, min(w, -(-x1 // 16) * 16), min(h, -(-y1 // 16) * 16)
            regions.append(cv2.imencode(".png", bgr[y0:y1, x0:x1], PNG_FAST)[1].tobytes())
            origins[i] = x0, y0
        if len(jpegs) < len(crops.crops):
            raise HygieError(f"{video}: decoded {len(jpegs)} frames but its prepared crops have {len(crops.crops)}.")
        return cls(jpegs, regions, origins)

    def images(self) -> Iterator[tuple[int, np.ndarray | None, tuple[int, int]]]:
        """A `Painter`'s images, for ever: each output frame's template frame (ping-pong), its mouth region (None
        without a face) and that region's origin."""
        k = 0
        while True:
            i = pingpong_index(k, len(self.jpegs))
            png = self.regions[i]
            region = None if png is None else cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
            yield i, region, tuple(self.origins[i])
            k += 1


@dataclass(frozen=True)
class LiveFrame:
    """One output frame: template frame `template` with `region` (RGB, None: nothing to change) drawn at `origin`."""

    index: int
    template: int
    origin: tuple[int, int]
    region: np.ndarray | None
    audio: np.ndarray  # the samples it shows


class LiveSession:
    """One model and one template, live: `push` audio (mono float32 at `model.data.sr`), get `LiveFrame`s."""

    def __init__(
        self,
        model: MouthModel,
        template: Crops,
        frames: TemplateFrames,
        *,
        name: str = "template",
        blend: str = "feather",
        batch: int = 8,
    ) -> None:
        self.model, self.batch = model, batch
        self.sr, self.fps = model.data.sr, model.data.fps
        self.painter = Painter(model, template, frames.images(), name=name, blend=blend)
        self.mel, self.cond = model.mel_stream(), model.condition_stream()
        self.audio = np.zeros(0, np.float32)  # samples from `audio_start` on, not yet sent with a frame
        self.audio_start = 0

    @property
    def frames_out(self) -> int:
        """Frames made so far."""
        return self.painter.k

    def push(self, pcm: np.ndarray) -> list[LiveFrame]:
        """The frames the audio so far completes."""
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        if not np.isfinite(pcm).all():
            raise HygieError("live audio: the samples hold NaN or infinity; send PCM in [-1, 1].")
        self.audio = np.concatenate([self.audio, pcm])
        return self._paint(self.cond.push(self.mel.push(pcm)))

    def flush(self) -> list[LiveFrame]:
        """The last frames, the audio having ended (the audio's duration decides their number, as in `render`)."""
        rows = self.cond.push(self.mel.flush())
        return self._paint(np.concatenate([rows, self.cond.flush()]))

    def _paint(self, rows: np.ndarray) -> list[LiveFrame]:
        """Frames for the next `len(rows)` output frames, in batches, each with its share of the audio."""
        out = []
        for i in range(0, len(rows), self.batch):
            r, k0 = rows[i : i + self.batch], self.painter.k
            for k, (t, region, origin) in enumerate(self.painter.paint(len(r), r), k0):
                out.append(LiveFrame(k, t, origin, region, self._audio_of(k)))
        return out

    def _audio_of(self, k: int) -> np.ndarray:
        """The samples frame k shows (zeros past the audio's end); forgets those before them."""
        a, b = (round(k * self.sr / self.fps), round((k + 1) * self.sr / self.fps))
        clip = self.audio[a - self.audio_start : b - self.audio_start]
        clip = np.pad(clip, (0, b - a - len(clip)))
        self.audio, self.audio_start = self.audio[b - self.audio_start :], b
        return clip
