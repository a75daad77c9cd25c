"""Render: re-voice a template video with new audio, streaming decode -> model in batches -> blend -> encode.

Memory stays flat with the audio's length: frames are decoded, blended and encoded a batch at a time. When the
audio outlasts the template, the template plays forwards then backwards (ping-pong), read back from a raw
frame cache on disk (a temp file, not RAM) so no frame is decoded twice and no jump is visible.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import Queue

import numpy as np
from tqdm import tqdm

from hygie_lib.blend import paste_mouth
from hygie_lib.dataset import mel_windows
from hygie_lib.io import HygieError, atomic_path
from hygie_lib.runtime import MouthModel
from hygie_lib.video import VideoWriter, iter_frames, probe_video

AUDIO_SR = 48000  # sample rate of the muxed output audio (the model hears its own SR via the mel)
SILENCE = 1e-4  # peak amplitude below which an audio file counts as silent
METADATA = {"comment": "Synthetic lip-sync made by HygieSync: the mouth region is generated from the audio."}


@dataclass
class Template:
    """A prepared template: crops [N, S, S, 3] uint8, boxes [N, 3], face flags [N], mask [S, S], crop padding."""

    crops: np.ndarray
    boxes: np.ndarray
    face: np.ndarray
    mask: np.ndarray
    pad: float

    @classmethod
    def load(cls, path: str | os.PathLike) -> Template:
        """From a build_crops output (crops.npz)."""
        with np.load(path) as z:
            return cls(z["crops"], z["boxes"], z["face"], z["mask"], float(z["pad"]))

    def fits(self, data: dict) -> bool:
        """Whether the crops were made like a model's training crops (`data`: its size and padding)."""
        return self.crops.shape[1] == data["img_size"] and abs(self.pad - data["mouth_pad"]) < 1e-6


def pingpong_index(k: int, n: int) -> int:
    """Template frame shown at output frame k: 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... (no frame shown twice in a row)."""
    if n == 1:
        return 0
    k %= 2 * n - 2
    return k if k < n else 2 * n - 2 - k


def pingpong_frames(video: str | os.PathLike, fps: float, n_template: int, n_out: int) -> Iterator[tuple[int, np.ndarray]]:
    """(template index, RGB frame) for output frames 0..n_out-1, playing the template back and forth.

    The first pass streams from the decoder; later passes read the frames back from a raw cache file.
    """
    looping, shape, decoded = n_out > n_template, None, 0
    with tempfile.TemporaryFile(prefix="hygie-frames-") as cache:
        for i, frame in zip(range(min(n_out, n_template)), iter_frames(video, fps)):
            if looping:
                cache.write(frame.tobytes())
            shape, decoded = frame.shape, i + 1
            yield i, frame
        if decoded < min(n_out, n_template):
            raise HygieError(f"{video}: decoded {decoded} frames but its prepared crops have {n_template}; rerun `dvc repro`.")
        size = int(np.prod(shape))
        for k in range(n_template, n_out):
            i = pingpong_index(k, n_template)
            cache.seek(i * size)
            yield i, np.frombuffer(cache.read(size), np.uint8).reshape(shape)


def reference_indices(face: np.ndarray) -> np.ndarray:
    """For each template frame, the face frame half the template away that serves as its reference crop.

    As in training, the reference is never the frame itself or its neighbours, and it moves smoothly with
    the template so the reference's small differences do not flicker.
    """
    n, with_face = len(face), np.flatnonzero(face)
    wanted = (np.arange(n) + n // 2) % n
    after = with_face[np.searchsorted(with_face, wanted).clip(0, len(with_face) - 1)]  # nearest face frame at or after
    before = with_face[(np.searchsorted(with_face, wanted, side="right") - 1).clip(0)]  # ... and at or before
    return np.where(np.abs(wanted - before) <= np.abs(after - wanted), before, after)


def check_inputs(model: MouthModel, template: Template, template_video: str | os.PathLike, fps: float, mel: np.ndarray) -> None:
    """Raise a HygieError if the model, the template's crops and the mel were not made with the same params."""
    d = model.data
    if not template.fits(d):
        raise HygieError(
            f"{template_video}: its crops are {template.crops.shape[1]}px with MOUTH_PAD {template.pad} but the model was trained on "
            f"{d['img_size']}px crops with MOUTH_PAD {d['mouth_pad']}. Prepare the template with the model's params "
            "(`dvc repro`), or retrain."
        )
    if abs(d["fps"] - fps) > 1e-6 or mel.shape[0] != d["n_mels"]:
        raise HygieError(
            f"the model was trained at {d['fps']} fps with {d['n_mels']} mel bands, the inputs are {fps} fps with "
            f"{mel.shape[0]} bands. Use the model's params (see params.yaml), or retrain."
        )
    if not template.face.any():
        raise HygieError(f"{template_video}: no face was found in any frame, so there is no mouth to re-voice.")


def check_audio(y: np.ndarray, path: str | os.PathLike) -> None:
    """Raise a HygieError if the audio is silent."""
    if np.abs(y).max() < SILENCE:
        raise HygieError(f"{path}: the audio is silent (peak below {SILENCE}). Give a file with speech in it.")


def model_inputs(crops: np.ndarray, refs: np.ndarray | None, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 crops and reference crops [B, S, S, 3] -> the model's masked and ref inputs, float32 [B, 3, S, S] in [0, 1]."""
    masked = np.ascontiguousarray(crops.astype(np.float32).transpose(0, 3, 1, 2) / 255.0 * (1.0 - mask.astype(np.float32)))
    return masked, None if refs is None else refs.astype(np.float32).transpose(0, 3, 1, 2) / 255.0


def to_pixels(crops: np.ndarray) -> np.ndarray:
    """Model output [B, 3, S, S] in [0, 1] -> uint8 images [B, S, S, 3]."""
    return (crops.clip(0.0, 1.0).transpose(0, 2, 3, 1) * 255.0 + 0.5).astype(np.uint8)


def render_frames(
    model: MouthModel, template: Template, template_video: str | os.PathLike, mel: np.ndarray, *,
    fps: float, blend: str = "poisson", batch: int = 32, seconds: dict[str, float] | None = None,
) -> Iterator[np.ndarray]:
    """Output RGB frames, one per `mel_per_frame` mel columns: template frames with the mouth drawn from `mel`.

    Frames without a face pass through untouched. Seconds spent per step are added to `seconds`.
    """
    check_inputs(model, template, template_video, fps, mel)
    per_frame, win = int(model.data["mel_per_frame"]), int(model.data["mel_win"])
    n_out, n_template = mel.shape[1] // per_frame, len(template.crops)
    refs = reference_indices(template.face)
    seconds = defaultdict(float) if seconds is None else seconds
    frames = pingpong_frames(template_video, fps, n_template, n_out)
    for k0 in range(0, n_out, batch):
        ks = np.arange(k0, min(n_out, k0 + batch))
        t = time.perf_counter()
        chunk = [next(frames) for _ in ks]
        idx = np.array([i for i, _ in chunk])
        seconds["decode"] += _lap(t)
        t = time.perf_counter()
        face = template.face[idx]
        masked, ref = model_inputs(template.crops[idx[face]], template.crops[refs[idx[face]]] if model.reference else None,
                                   template.mask)  # [F, 3, S, S]
        seconds["crops"] += _lap(t)
        t = time.perf_counter()
        windows = mel_windows(mel, ks[face], per_frame=per_frame, win=win)[:, None].astype(np.float32)  # [F, 1, M, W]
        seconds["mel"] += _lap(t)
        t = time.perf_counter()
        if face.any():
            mouths = to_pixels(model(masked, windows, ref))
        seconds["model"] += _lap(t)
        for j, (i, frame) in zip(np.cumsum(face) - 1, chunk):
            t = time.perf_counter()
            if template.face[i]:
                frame = paste_mouth(frame, mouths[j], template.boxes[i], template.mask, mode=blend)
            seconds["blend"] += _lap(t)
            yield frame


def render(
    model: MouthModel, template: Template, template_video: str | os.PathLike, mel: np.ndarray, audio: np.ndarray,
    out: str | os.PathLike, *, fps: float, blend: str = "poisson", batch: int = 32, preset: str = "superfast",
    progress: bool = True,
) -> dict[str, float]:
    """Write `out` (H.264 + AAC MP4, atomically): the re-voiced template with `audio` (mono, AUDIO_SR) muxed in.

    Its duration is the audio's. Encoding runs in a second thread (PyAV releases the GIL), overlapping the
    model and blending; `preset` is libx264's speed/size trade-off. Returns the seconds spent per step
    (decode, crops, mel, model, blend, encode; encode overlaps the others).
    """
    info = probe_video(template_video)
    if info.width % 2 or info.height % 2:
        raise HygieError(f"{template_video}: H.264 needs an even frame size, got {info.width}x{info.height}. Crop or scale it.")
    seconds: dict[str, float] = defaultdict(float)
    frames = render_frames(model, template, template_video, mel, fps=fps, blend=blend, batch=batch, seconds=seconds)
    n_out = mel.shape[1] // int(model.data["mel_per_frame"])
    with atomic_path(out) as tmp:
        with VideoWriter(tmp, fps, info.width, info.height, audio=audio, sr=AUDIO_SR, preset=preset, metadata=METADATA) as writer:
            queue: Queue[np.ndarray | None] = Queue(maxsize=8)  # bounded: memory stays flat

            def encode() -> None:
                error = None
                while (frame := queue.get()) is not None:  # after an error, keep draining so the producer never blocks
                    t = time.perf_counter()
                    try:
                        error or writer.write(frame)
                    except Exception as e:  # noqa: BLE001 - re-raised in the main thread by encoded.result()
                        error = e
                    seconds["encode"] += _lap(t)
                if error:
                    raise error

            with ThreadPoolExecutor(1) as pool:
                encoded = pool.submit(encode)
                try:
                    for frame in tqdm(frames, total=n_out, desc="render", unit="frame", disable=not progress):
                        if encoded.done():  # the encoder failed: stop and raise its error below
                            break
                        queue.put(frame)
                finally:
                    queue.put(None)
                encoded.result()
            t = time.perf_counter()  # leaving the block flushes the encoders
        seconds["encode"] += _lap(t)
    return dict(seconds)


def _lap(t0: float) -> float:
    """Seconds since t0."""
    return time.perf_counter() - t0


def prepare_template(video: str | os.PathLike, *, fps: float, size: int, pad: float, alpha: float, min_confidence: float) -> Template:
    """Landmarks and crops of a template computed on the fly (what detect_landmarks + build_crops store)."""
    from hygie_lib.crops import build_crops
    from hygie_lib.landmarks import check_face_rate, detect_video

    landmarks = detect_video(video, fps, min_confidence=min_confidence)
    check_face_rate(landmarks, video, min_rate=0.0)  # frames without a face pass through, but some must have one
    c = build_crops(video, landmarks, fps, size=size, pad=pad, alpha=alpha)
    return Template(c["crops"], c["boxes"], c["face"], c["mask"], pad)


def audio_features(path: str | os.PathLike, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel as the model was trained on, mono audio at AUDIO_SR to mux) of any audio or video file."""
    from hygie_lib.audio import load_audio, log_mel

    y = load_audio(path, int(data["sr"]))
    check_audio(y, path)
    try:
        mel = log_mel(y, int(data["sr"]), fps=data["fps"], n_mels=data["n_mels"], per_frame=data["mel_per_frame"], n_fft=data["n_fft"])
    except HygieError as e:
        raise HygieError(f"{path}: {e} Give a longer audio file.") from e
    return mel, load_audio(path, AUDIO_SR)
