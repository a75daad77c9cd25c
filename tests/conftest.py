"""Shared test helpers: small media files made on the fly, and running stage scripts as DVC would."""

from __future__ import annotations

import struct
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from hygie_lib.audio2shape import BANDS, AudioToShape, ShapeModel
from hygie_lib.checkpoint import DataInfo, save_checkpoint
from hygie_lib.crops import mouth_mask
from hygie_lib.landmarks import INNER_LIPS, LEFT_EYE, RIGHT_EYE
from hygie_lib.model import HygieUNetLite
from hygie_lib.render import prepare_template
from hygie_lib.shape import MOUTH, ShapeSpace

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"  # the real clips (CI has them; never copied here)


DATA = DataInfo(
    img_size=32, mouth_pad=1.3, ema_alpha=0.7, fps=25.0, sr=16000, n_fft=512, n_mels=80, mel_per_frame=4, mel_win=16
)


def tiny_shapes(landmarks: np.ndarray, k: int = 4, offset: int = 0) -> ShapeModel:
    """A shape model of one face [478, 3] whose mouth opens and spreads at random, and a random audio -> shape."""
    rng = np.random.default_rng(0)
    frames = np.repeat(landmarks[None], 60, axis=0).astype(np.float64)
    iod = np.linalg.norm(landmarks[LEFT_EYE, :2].mean(0) - landmarks[RIGHT_EYE, :2].mean(0))
    lower = MOUTH[landmarks[MOUTH, 1] > landmarks[INNER_LIPS, 1].mean()]
    frames[:, lower, 1] += rng.uniform(0, 0.3 * iod, (60, 1))  # the jaw drops
    frames[:, MOUTH, 0] += rng.normal(0, 0.02 * iod, (60, 1)) * (landmarks[MOUTH, 0] - landmarks[MOUTH, 0].mean())
    space = ShapeSpace.fit(frames, k)
    weights = rng.normal(0, 0.3, (5 * BANDS + 1, space.k)) * space.scale
    predictor = AudioToShape(np.full(BANDS, -4.0), np.full(BANDS, 3.0), weights, np.zeros(space.k), 2, 0.0, -np.inf)
    return ShapeModel(space, predictor, offset)


def save_model(path, shapes: ShapeModel, img_size=32, seed=0, cond="shape"):
    """An untrained tiny checkpoint whose mouth output still depends on its condition (FiLM and head randomised)."""
    torch.manual_seed(seed)
    model = HygieUNetLite(mask=mouth_mask(img_size, DATA.mouth_pad), widths=(8, 16), emb=16, cond=cond)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(path, model, replace(DATA, img_size=img_size), shapes)
    return path


@pytest.fixture(scope="session")
def demo(tmp_path_factory, face_landmarks):
    """A 2 s synthetic template, a 3 s audio, its prepared template and a tiny model."""
    from hygie_lib.synth import make_demo_data

    d = tmp_path_factory.mktemp("render")
    paths = make_demo_data(d / "raw", seed=3, train_seconds=1, template_seconds=2, audio_seconds=3, progress=False)
    template = prepare_template(paths["template"], DATA)
    shapes = tiny_shapes(face_landmarks)
    return {
        "dir": d,
        "template_video": paths["template"],
        "audio": paths["new_audio"],
        "template": template,
        "shapes": shapes,
        "model": save_model(d / "model.pt", shapes),
        "audio_model": save_model(d / "audio_model.pt", shapes, cond="audio"),
    }


def write_audio(path: Path, y: np.ndarray, sr: int, codec: str, channels: int = 1) -> Path:
    """Encode mono float audio with any PyAV codec into any container (by suffix), duplicated to `channels`."""
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=sr)
        s.layout = layout
        for i in range(0, len(y), 1024):  # PyAV converts to the codec's sample format and frame size
            chunk = np.repeat(y[None, i : i + 1024], channels, 0).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            frame.sample_rate, frame.pts = sr, i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def write_video(
    path: Path, frames: list[np.ndarray], fps: float, codec: str = "libx264", pix_fmt: str = "yuv420p"
) -> Path:
    """Encode RGB frames with any PyAV video codec (e.g. ffv1 for odd sizes or lossless)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def set_mp4_rotation(path: Path, clockwise: int) -> None:
    """Patch the track header's display matrix of an MP4, as phones do, so players rotate it by `clockwise`."""
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    m = i + 4 + 4 + 4 * 5 + 8 + 8  # after version/flags, times, track id, duration, reserved, layer..volume
    one = 1 << 16
    abcd = {0: (one, 0, 0, one), 90: (0, one, -one, 0), 180: (-one, 0, 0, -one), 270: (0, -one, one, 0)}[clockwise]
    data[m : m + 16] = struct.pack(">4i", *abcd)
    path.write_bytes(bytes(data))


def run_stage(name: str, *args: str | Path) -> subprocess.CompletedProcess:
    """Run `python stages/<name>.py args...` from the repo root, as `dvc repro` does."""
    cmd = [sys.executable, str(ROOT / "stages" / f"{name}.py"), *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def face_image() -> np.ndarray:
    """The bundled astronaut photo, cropped around the head and upscaled to 320x320 RGB."""
    from skimage import data

    return cv2.resize(data.astronaut()[10:250, 104:344], (320, 320), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="session")
def face_landmarks(face_image: np.ndarray) -> np.ndarray:
    """FaceMesh landmarks [478, 3] of `face_image`."""
    from hygie_lib.landmarks import FaceMesh

    with FaceMesh(static=True) as mesh:
        lm = mesh(face_image)
    assert lm is not None
    return lm
