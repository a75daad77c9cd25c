"""`hygie doctor`: check that every piece HygieSync relies on works on this machine, with a fix for each failure."""

from __future__ import annotations

import importlib
import importlib.metadata
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

INSTALL_FIX = "run `make install` (or `pip install -e .` after `pip install torch==2.13.0`)"


def check_imports() -> str:
    """Import every runtime dependency."""
    names = ["torch", "mediapipe", "cv2", "av", "librosa", "numpy", "pandas", "pyarrow", "yaml", "dvc", "dvclive"]
    versions = []
    for name in names:
        module = importlib.import_module(name)
        versions.append(f"{name} {getattr(module, '__version__', '?')}")
    opencvs = sorted({d.metadata["Name"] for d in importlib.metadata.distributions() if "opencv" in d.metadata["Name"]})
    if len(opencvs) > 1:
        raise RuntimeError(
            f"{' and '.join(opencvs)} are installed side by side; uninstall all but opencv-contrib-python"
        )
    return ", ".join(versions)


def check_device() -> str:
    """Pick the torch device and run one convolution on it."""
    import torch

    from hygie_lib.device import best_device

    device = best_device()
    x = torch.randn(1, 3, 16, 16, device=device)
    torch.nn.functional.conv2d(x, torch.randn(4, 3, 3, 3, device=device)).sum().item()
    return f"{device} (threads: {torch.get_num_threads()})"


def check_face() -> str:
    """Find a face and its lips with MediaPipe FaceMesh on a bundled photo."""
    from skimage import data

    from hygie_lib.landmarks import LIPS, FaceMesh

    with FaceMesh(static=True) as mesh:
        lm = mesh(data.astronaut())
    if np.isnan(lm).all():
        raise RuntimeError("FaceMesh found no face in skimage's astronaut photo")
    return f"478 landmarks, {len(LIPS)} lip points"


def check_audio() -> str:
    """Encode a 440 Hz tone as AAC with PyAV, decode it back at 16 kHz and find the tone."""
    import av

    from hygie_lib.audio import load_audio

    sr = 44100
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tone.m4a"
        with av.open(str(path), "w") as c:
            s = c.add_stream("aac", rate=sr)
            s.layout = "mono"
            for i in range(0, sr, 1024):
                f = av.AudioFrame.from_ndarray(tone[None, i : i + 1024], format="fltp", layout="mono")
                f.sample_rate, f.pts = sr, i
                c.mux(s.encode(f))
            c.mux(s.encode(None))
        y = load_audio(path, 16000)
    peak = np.argmax(np.abs(np.fft.rfft(y))) * 16000 / len(y)
    if abs(peak - 440) > 5:
        raise RuntimeError(f"decoded tone peaks at {peak:.0f} Hz instead of 440 Hz")
    return f"AAC round trip, {len(y) / 16000:.2f} s, tone at {peak:.0f} Hz"


def check_video() -> str:
    """Encode 10 frames as H.264 MP4 with PyAV and decode them back unchanged (PSNR > 30 dB)."""
    from hygie_lib.video import VideoWriter, iter_frames

    yy, xx = np.mgrid[0:96, 0:128]
    frames = [
        np.stack(
            [127 + 100 * np.sin((xx + 3 * i) / 9), 127 + 100 * np.cos(yy / 7), np.full_like(xx, 40 + 8 * i)], -1
        ).astype(np.uint8)
        for i in range(10)
    ]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "roundtrip.mp4"
        with VideoWriter(path, 25, 128, 96) as w:
            for f in frames:
                w.write(f)
        back = list(iter_frames(path, 25))
    if len(back) != len(frames):
        raise RuntimeError(f"wrote {len(frames)} frames, read {len(back)}")
    mse = np.mean([(a.astype(float) - b) ** 2 for a, b in zip(frames, back)])
    psnr = 10 * np.log10(255**2 / max(mse, 1e-9))
    if psnr < 30:
        raise RuntimeError(f"round trip PSNR {psnr:.1f} dB")
    return f"H.264 round trip, {len(back)} frames, PSNR {psnr:.1f} dB"


def check_poisson() -> str:
    """Paste a bright mouth into a grey frame with the Poisson blend (OpenCV warps, SciPy sine transforms)."""
    from hygie_lib.blend import paste_mouth
    from hygie_lib.crops import mouth_mask

    frame = np.full((120, 120, 3), 120, np.uint8)
    out = paste_mouth(frame, np.full((64, 64, 3), 200, np.uint8), np.array([60.0, 60.0, 80.0]), mouth_mask(64, 1.3))
    if not np.array_equal(out[:5], frame[:5]):
        raise RuntimeError("pixels outside the mouth box changed")
    return "Poisson blend OK"


CHECKS: list[tuple[str, Callable[[], str], str]] = [
    ("imports", check_imports, INSTALL_FIX),
    ("torch device", check_device, "reinstall torch: `pip install torch==2.13.0`"),
    ("MediaPipe face", check_face, "pin `mediapipe==0.10.21` (newer wheels lack FaceMesh): " + INSTALL_FIX),
    ("audio decode", check_audio, "PyAV is missing its codecs: `pip install --force-reinstall av`"),
    ("video round trip", check_video, "PyAV is missing libx264: `pip install --force-reinstall av`"),
    (
        "Poisson blend",
        check_poisson,
        "reinstall OpenCV and SciPy: `pip install --force-reinstall opencv-contrib-python scipy`",
    ),
]


def run_checks() -> list[tuple[str, bool, str]]:
    """Run every check: (name, ok, detail or `error -> fix`)."""
    results = []
    for name, check, fix in CHECKS:
        try:
            results.append((name, True, check()))
        except Exception as e:  # noqa: BLE001 - a doctor reports every failure, whatever it is
            results.append((name, False, f"{type(e).__name__}: {e} -> fix: {fix}"))
    return results
