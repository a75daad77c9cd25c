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

from hygie_lib.checkpoint import DataInfo, save_checkpoint
from hygie_lib.crops import mouth_mask
from hygie_lib.model import HygieUNetLite
from hygie_lib.render import prepare_template

ROOT = Path(__file__).resolve().parents[1]


DATA = DataInfo(
    img_size=32, mouth_pad=1.3, ema_alpha=0.7, fps=25.0, sr=16000, n_fft=512, n_mels=80, mel_per_frame=4, mel_win=16
)


def save_model(path, img_size=32, seed=0):
    """An untrained tiny checkpoint whose mouth output still depends on the audio (FiLM and head randomised)."""
    torch.manual_seed(seed)
    model = HygieUNetLite(mask=mouth_mask(img_size, DATA.mouth_pad), widths=(8, 16), emb=16)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(path, model, replace(DATA, img_size=img_size))
    return path


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """A 2 s synthetic template, a 3 s audio, its prepared template and a tiny model."""
    from hygie_lib.synth import make_demo_data

    d = tmp_path_factory.mktemp("render")
    paths = make_demo_data(d / "raw", seed=3, train_seconds=1, template_seconds=2, audio_seconds=3, progress=False)
    template = prepare_template(paths["template"], DATA)
    return {
        "dir": d,
        "template_video": paths["template"],
        "audio": paths["new_audio"],
        "template": template,
        "model": save_model(d / "model.pt"),
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
