"""How far before speech the mouth should open: the audio -> shape model's held-out `aperture_corr` for each lead.

For each clip of ../shared/data/real (or video given by path), train_shape's library call (`learn_shapes`: the shape
model fitted on the first 75%, as benchmarks/real_speakers.py fits it) measures on the rest how well the predicted
mouth opening follows the real one when silent frames up to `lead` frames before speech are left to the audio ->
shape model rather than rested (audio2shape.LEADS; render uses SPEECH_LEAD, live LIVE_LEAD).
Usage: python benchmarks/speech_lead.py [--clips obama_20s data/raw/train_video.mp4 ...]  (about 1 minute on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hygie_lib.audio import Mel, load_audio  # noqa: E402
from hygie_lib.audio2shape import LEADS, LIVE_LEAD, SPEECH_LEAD, learn_shapes  # noqa: E402
from hygie_lib.landmarks import detect_video  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
CLIPS = ["obama_20s", "hdtf_katiehill_8s", "hdtf_radio2_8s", "hdtf_radio34_8s", "hdtf_menendez_8s"]


def by_lead(video: Path) -> dict[str, float]:
    """{lead: held-out aperture_corr} of one clip."""
    landmarks = detect_video(video, 25.0, progress=False)
    face = ~np.isnan(landmarks[:, 0, 0])
    mel = Mel.of(load_audio(video, 16000), 16000, fps=25.0, n_mels=80, per_frame=4, n_fft=512).mel
    _, metrics = learn_shapes(landmarks, face, mel, 4, train_split=0.75, components=8, half=2, smooth=1.0)
    return metrics["aperture_corr_by_lead"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=CLIPS, help="clip names in ../shared/data/real, or video paths")
    args = ap.parse_args()
    print(f"held-out aperture_corr by lead (render: {SPEECH_LEAD}, live: {LIVE_LEAD})")
    print(f"{'clip':<22}" + "".join(f"{lead:>8}" for lead in LEADS))
    for clip in args.clips:
        video = Path(clip) if Path(clip).suffix else REAL / f"{clip}.mp4"
        if not video.is_file():
            sys.exit(f"{video}: not found (the real clips live in {REAL}; a demo video: `hygie demo-data`).")
        corr = by_lead(video)
        print(f"{video.stem:<22}" + "".join(f"{corr[str(lead)]:>8.3f}" for lead in LEADS))


if __name__ == "__main__":
    main()
