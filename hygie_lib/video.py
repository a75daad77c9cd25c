"""Video decoding at a constant frame rate and H.264 + AAC encoding, all through PyAV (bundled FFmpeg)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from hygie_lib.io import HygieError

MAX_SIDE = 4096  # larger frames are refused: FaceMesh gains nothing and memory explodes
_EPS = 1e-3  # timestamp rounding tolerated when resampling to a constant rate, in output frames


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as the rest of the pipeline will see it (rotation applied)."""

    width: int
    height: int
    fps: float  # the file's own average frame rate
    duration: float  # seconds
    rotation: int  # degrees counter-clockwise applied to decoded frames
    has_audio: bool


def open_media(path: str | os.PathLike) -> av.container.InputContainer:
    """Open any audio/video file with PyAV, turning FFmpeg's errors into a HygieError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise HygieError(f"{path}: file not found. Check the path, or run `hygie demo-data` for the demo files.")
    if path.stat().st_size == 0:
        raise HygieError(f"{path}: the file is empty (0 bytes). Copy or export it again.")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise HygieError(
            f"{path}: not a readable media file ({e}). It may be truncated or in an unknown format: "
            "re-export it as MP4 (H.264 + AAC) or WAV."
        ) from e


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise HygieError(
            f"{path}: has no video frames (no video stream, or an empty one). Pass a video (mp4, mov, mkv, webm)."
        )
    return container.streams.video[0]


def _rotation(stream: av.video.stream.VideoStream) -> int:
    """Display rotation (multiple of 90, counter-clockwise) from the stream's display matrix, else 0."""
    for frame in stream.container.decode(stream):
        return int(round(frame.rotation / 90.0)) * 90 % 360
    return 0


def probe_video(path: str | os.PathLike, max_side: int = MAX_SIDE) -> VideoInfo:
    """Read a video's geometry, rate and duration; raise a HygieError for anything unusable."""
    path = Path(path)
    with open_media(path) as c:
        s = _video_stream(c, path)
        w, h = s.codec_context.width, s.codec_context.height
        if not w or not h:
            raise HygieError(f"{path}: the video stream has no frame size (corrupt header). Re-export the video.")
        if max(w, h) > max_side:
            raise HygieError(
                f"{path}: {w}x{h} is larger than the {max_side}px limit. Downscale it first, e.g. to 1920 px wide."
            )
        fps = float(s.average_rate or s.guessed_rate or 0) or 25.0
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        else:
            duration = float(c.duration or 0) / av.time_base
        try:
            rotation = _rotation(s)
        except av.error.FFmpegError as e:
            raise HygieError(f"{path}: cannot decode the first frame ({e}). The file is corrupt: re-export it.") from e
        if duration <= 0:
            raise HygieError(f"{path}: has no video frames (duration 0). Re-export the video.")
        if rotation % 180:
            w, h = h, w
        return VideoInfo(w, h, fps, duration, rotation, bool(c.streams.audio))


def _to_rgb(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    img = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(img, k=rotation // 90)) if rotation else img


def iter_frames(path: str | os.PathLike, fps: float, max_side: int = MAX_SIDE) -> Iterator[np.ndarray]:
    """Yield RGB frames [H, W, 3] uint8 at a constant `fps`: output frame n is the input frame on screen at n/fps.

    Variable or other-rate input is resampled by repeating or dropping frames (as FFmpeg's fps filter does),
    so frame n always belongs to time n/fps and stays aligned with the audio. Rotation metadata is applied.
    """
    path = Path(path)
    info = probe_video(path, max_side)
    n = 0
    with open_media(path) as c:
        s = _video_stream(c, path)
        s.thread_type = "AUTO"
        t0 = None
        prev: av.VideoFrame | None = None
        prev_rgb: np.ndarray | None = None
        try:
            for frame in c.decode(s):
                if frame.time is None:
                    continue
                t0 = frame.time if t0 is None else t0
                while prev is not None and n < (frame.time - t0) * fps - _EPS:
                    prev_rgb = _to_rgb(prev, info.rotation) if prev_rgb is None else prev_rgb
                    yield prev_rgb
                    n += 1
                prev, prev_rgb = frame, None
        except av.error.FFmpegError as e:
            raise HygieError(
                f"{path}: decoding failed after {n} frames ({e}). The file is corrupt or truncated: re-export it."
            ) from e
        if prev is None:
            raise HygieError(f"{path}: has no video frames that decode. Re-export the video.")
        last_duration = float(prev.duration * prev.time_base) if prev.duration else 1.0 / info.fps
        end = prev.time - t0 + last_duration
        while n < end * fps - _EPS or n == 0:
            prev_rgb = _to_rgb(prev, info.rotation) if prev_rgb is None else prev_rgb
            yield prev_rgb
            n += 1


def count_frames(duration: float, fps: float) -> int:
    """Number of constant-rate frames `iter_frames` yields for a clip of `duration` seconds."""
    return max(1, int(np.ceil(duration * fps - _EPS)))


CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}  # file suffix -> container holding H.264 + AAC


class VideoWriter:
    """Stream RGB frames (and optionally mono audio, interleaved as video advances) into H.264 + AAC.

    The container follows the file's suffix (CONTAINERS). `audio` (mono float32 at `sr`) is one array or an
    iterable of chunks, pulled only as far as the video has got: a long audio file is never held in memory whole.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        *,
        audio: np.ndarray | Iterable[np.ndarray] | None = None,
        sr: int = 16000,
        crf: int = 18,
        preset: str = "veryfast",
        metadata: dict[str, str] | None = None,
    ) -> None:
        if width % 2 or height % 2:
            raise HygieError(f"{path}: H.264 needs even frame sizes, got {width}x{height}.")
        suffix = Path(path).suffix.lower()
        if suffix not in CONTAINERS:
            raise HygieError(f"{path}: videos are written as {', '.join(CONTAINERS)}; name the file so.")
        self.container = av.open(str(path), mode="w", format=CONTAINERS[suffix])
        for key, value in (metadata or {}).items():
            self.container.metadata[key] = value
        rate = Fraction(fps).limit_denominator(1001)
        self.video = self.container.add_stream("libx264", rate=rate)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        # with x264's macroblock tree on, the same frames gave other bytes from one write to the next in a process that
        # decodes in between (README, "Reproducible renders"); with it off, they do not
        self.video.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
        self.fps, self.n = float(rate), 0
        self._chunks = None if audio is None else iter([audio] if isinstance(audio, np.ndarray) else audio)
        self._pending, self.sr, self.audio_pos = np.zeros(0, np.float32), sr, 0
        if self._chunks is not None:
            self.audio = self.container.add_stream("aac", rate=sr)
            self.audio.layout = "mono"

    def write(self, rgb: np.ndarray) -> None:
        """Encode one RGB frame [H, W, 3] uint8, then the audio up to its end time."""
        # OpenCV's RGB -> I420 (BT.601, limited range, as swscale) is several times faster than PyAV's reformat
        frame = av.VideoFrame.from_ndarray(
            cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420), format="yuv420p"
        )
        frame.pts = self.n
        self.container.mux(self.video.encode(frame))
        self.n += 1
        self._write_audio(until=round(self.n / self.fps * self.sr))

    def _write_audio(self, until: int | None) -> None:
        """Encode whole audio frames up to sample `until` (None: everything left, the last frame partial)."""
        if self._chunks is None:
            return
        size = self.audio.codec_context.frame_size or 1024
        while until is None or self.audio_pos + size <= until:
            while len(self._pending) < size and (chunk := next(self._chunks, None)) is not None:
                self._pending = np.concatenate([self._pending, np.asarray(chunk, np.float32)])
            if len(self._pending) == 0 or (len(self._pending) < size and until is not None):
                return  # no more audio, or only a partial frame, which waits for close()
            chunk, self._pending = self._pending[:size], self._pending[size:]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk)[None, :], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = self.sr, self.audio_pos
            self.container.mux(self.audio.encode(frame))
            self.audio_pos += len(chunk)

    def close(self) -> None:
        """Flush encoders (rest of the audio included) and finish the file."""
        self._write_audio(until=None)
        self.container.mux(self.video.encode(None))
        if self._chunks is not None:
            self.container.mux(self.audio.encode(None))
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.container.close()
