"""The sharpness ceiling of a crop size and a resampling: real mouths cropped and pasted back, as render pastes them.

For each clip of ../shared/data/real (or video given by path), every 3rd frame's own mouth is cropped at IMG_SIZE
with a resampling, pasted back into the same frame (feathered, as render does, with that resampling), and the
pasted frame's sharpness (metrics.sharpness: Laplacian variance inside the mouth mask, in frame pixels) is divided
by the untouched frame's. A perfect generator can do no better than this ratio at that size: it is what
`sharpness_ratio` would be if the model drew the real mouth exactly. The same on the lips alone
(metrics.lip_sharpness) is the ceiling of `lip_sharpness_ratio`, printed as "lips" for Lanczos, render's resampling.
Usage: python benchmarks/sharpness.py [--clips obama_20s data/raw/template_idle.mp4 ...] [--sizes 128 160 192]
(about 1 minute on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hygie_lib.blend import feather  # noqa: E402
from hygie_lib.crops import box_roi, crop, mouth_boxes, mouth_mask, smooth_boxes, uncrop  # noqa: E402
from hygie_lib.landmarks import detect_video  # noqa: E402
from hygie_lib.metrics import lip_sharpness, sharpness  # noqa: E402
from hygie_lib.video import iter_frames  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
CLIPS = ["obama_20s", "hdtf_katiehill_8s", "hdtf_radio2_8s", "hdtf_radio34_8s", "hdtf_menendez_8s"]
RESAMPLINGS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
PAD = 1.3  # params.yaml's MOUTH_PAD


def ceilings(video: Path, sizes: list[int]) -> tuple[float, dict[tuple[int, str], float]]:
    """(median mouth box side in pixels, {(size, resampling): pasted / real sharpness, (size, "lips"): the same on the
    lips, Lanczos}) of one clip."""
    landmarks = detect_video(video, 25.0, progress=False)
    face = ~np.isnan(landmarks[:, 0, 0])
    boxes = smooth_boxes(mouth_boxes(landmarks, PAD), 0.7)
    frames = [(i, f) for i, f in enumerate(iter_frames(video, 25.0)) if i % 3 == 0 and face[i]]
    real_lips = np.nanmean([lip_sharpness(f, landmarks[i]) for i, f in frames])  # the lips do not depend on the mask
    out = {}
    for size in sizes:
        mask = mouth_mask(size, PAD)
        real = np.mean([sharpness(f, boxes[i], mask) for i, f in frames])
        for name, interp in RESAMPLINGS.items():
            pasted, lips = [], []
            for i, f in frames:
                roi = box_roi(boxes[i], *f.shape[:2])
                mouth = uncrop(crop(f, boxes[i], size, interp), boxes[i], roi, interp)
                back = feather(f, mouth, mask, boxes[i], roi)
                pasted.append(sharpness(back, boxes[i], mask))
                if name == "lanczos":
                    lips.append(lip_sharpness(back, landmarks[i]))
            out[size, name] = float(np.mean(pasted) / real)
            if lips:
                out[size, "lips"] = float(np.nanmean(lips) / real_lips)
    return float(np.median(boxes[face, 2])), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=CLIPS, help="names in ../shared/data/real, or video paths")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 192])
    args = ap.parse_args()
    if not REAL.is_dir():
        sys.exit(f"{REAL}: the real clips are not here.")
    cols = [(s, r) for s in args.sizes for r in [*RESAMPLINGS, "lips"]]
    print(f"{'clip':<20}{'box px':>8}" + "".join(f"{f'{s} {r}':>14}" for s, r in cols))
    for name in args.clips:
        side, ratio = ceilings(Path(name) if Path(name).is_file() else REAL / f"{name}.mp4", args.sizes)
        print(f"{Path(name).stem:<20}{side:>8.0f}" + "".join(f"{ratio[c]:>14.3f}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
