"""Stage build_crops: square, smoothed mouth crops of every frame, their boxes and the fixed mouth mask."""

import argparse

import numpy as np
from common import load_params, run

from hygie_lib.crops import build_crops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("video")
    ap.add_argument("landmarks", help="landmarks.npz from detect_landmarks")
    ap.add_argument("out", help="output crops.npz")
    args = ap.parse_args()
    p = load_params("video.fps", "build_crops.IMG_SIZE", "build_crops.MOUTH_PAD", "build_crops.EMA_ALPHA")
    landmarks = np.load(args.landmarks)["landmarks"]
    crops = build_crops(args.video, landmarks, p.fps, size=p.IMG_SIZE, pad=p.MOUTH_PAD, alpha=p.EMA_ALPHA)
    crops.save(args.out)
    print(f"{args.out}: {len(crops.crops)} crops of {p.IMG_SIZE}x{p.IMG_SIZE}")


if __name__ == "__main__":
    run(main)
