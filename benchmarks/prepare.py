"""Frames/s of each data stage (the library calls the stages make) on the demo train video, or any video.

Usage: python benchmarks/prepare.py [--video data/raw/train_video.mp4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hygie_lib.audio import Mel, load_audio  # noqa: E402
from hygie_lib.crops import build_crops  # noqa: E402
from hygie_lib.landmarks import detect_video  # noqa: E402
from hygie_lib.video import probe_video  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(ROOT / "data" / "raw" / "train_video.mp4"))
    args = ap.parse_args()
    if not Path(args.video).is_file():
        sys.exit(f"{args.video}: not found. Run `hygie demo-data` first (or pass --video).")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    fps, crops_p, mel_p = p["video"]["fps"], p["build_crops"], p["compute_mel"]
    info = probe_video(args.video)
    print(f"{args.video}: {info.width}x{info.height}, {info.duration:.1f} s, benchmarked at {fps} fps")

    timings = {}
    t = time.perf_counter()
    y = load_audio(args.video, p["extract_audio"]["SR"])
    timings["extract_audio"] = time.perf_counter() - t

    t = time.perf_counter()
    landmarks = detect_video(args.video, fps)
    timings["detect_landmarks"] = time.perf_counter() - t
    n = len(landmarks)

    t = time.perf_counter()
    build_crops(
        args.video, landmarks, fps, size=crops_p["IMG_SIZE"], pad=crops_p["MOUTH_PAD"], alpha=crops_p["EMA_ALPHA"]
    )
    timings["build_crops"] = time.perf_counter() - t

    t = time.perf_counter()
    Mel.of(
        y,
        p["extract_audio"]["SR"],
        fps=fps,
        n_mels=mel_p["N_MELS"],
        per_frame=mel_p["MEL_PER_FRAME"],
        n_fft=mel_p["N_FFT"],
    )
    timings["compute_mel"] = time.perf_counter() - t

    print(f"\n{'stage':<18}{'seconds':>9}{'frames/s':>11}")
    for stage, sec in timings.items():
        print(f"{stage:<18}{sec:>9.2f}{n / sec:>11.0f}")
    total = sum(timings.values())
    print(f"{'all four':<18}{total:>9.2f}{n / total:>11.0f}   ({n} frames)")


if __name__ == "__main__":
    main()
