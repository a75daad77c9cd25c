"""New audio at another level: how the mouth shapes follow a clip's held-out speech played louder or quieter, heard
as it is and at the training recording's level (`Mel.at_level`, what render does by default).

For each clip: FaceMesh, the mel and train_shape's model on the first 75%; then the held-out block's audio alone, as
new audio comes (the cross check's segment), scaled by each gain, its predicted shapes drawn at the real held-out
frames' poses. Prints, per gain, the correlation of their mouth opening with the real one (the held-out
aperture_corr) and their mean opening, as heard and level-matched; and the gain 3 s of it get, alone and followed by
20 s of silence (which `loud_level` leaves out). Then another speaker's speech (--voice, 60 s)
as new audio: the predicted mean opening where it speaks, as heard and level-matched, against the real speaker's
own where he speaks (train_shape's speech_opening). About 15 s per clip on 2 cores.
Usage: python benchmarks/audio_level.py [--clips obama_20s ...] [--gains -12 -6 0 6 12] [--voice WAV]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hygie_lib.audio import Mel, load_audio  # noqa: E402
from hygie_lib.audio2shape import ShapeModel, learn_shapes, openings_at, silent_frames  # noqa: E402
from hygie_lib.landmarks import detect_video  # noqa: E402
from hygie_lib.metrics import mouth_aperture  # noqa: E402
from hygie_lib.split import time_split  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
FPS, SR, PER_FRAME = 25.0, 16000, 4


def mel_of(y: np.ndarray) -> Mel:
    """The pipeline's default log-mel of 16 kHz audio."""
    return Mel.of(y, SR, fps=FPS, n_mels=80, per_frame=PER_FRAME, n_fft=512)


def openings(model: ShapeModel, mel: Mel, frames: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """The mouth openings of the shapes `model` predicts for `frames` of `mel`, drawn at these poses."""
    return openings_at(model.space, model.predictor.predict(mel.mel, PER_FRAME)[frames], poses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=["obama_20s"])
    ap.add_argument("--gains", type=float, nargs="+", default=[-12, -6, 0, 6, 12], help="dB")
    ap.add_argument("--voice", type=Path, default=REAL / "speech_en_60s.wav", help="another speaker's speech")
    args = ap.parse_args()
    voice = mel_of(load_audio(args.voice, SR))
    for name in args.clips:
        video = REAL / f"{name}.mp4"
        landmarks, y = detect_video(video, FPS, progress=False), load_audio(video, SR)
        face = ~np.isnan(landmarks[:, 0, 0])
        model, metrics = learn_shapes(
            landmarks, face, mel_of(y).mel, PER_FRAME, train_split=0.75, components=8, half=2, smooth=1.0
        )
        p, offset = model.predictor, model.offset
        val = time_split(face, train_split=0.75, gap=2 * p.half + 1 + abs(offset)).val_frames
        first = val[0]
        padded = np.pad(y, (0, round((abs(offset) + 1) * SR / FPS)))  # the cross check's segment: silence past the end
        segment = padded[round((first + offset) * SR / FPS) : round((val[-1] + 1 + offset) * SR / FPS)]
        real = mouth_aperture(landmarks[val])

        print(f"\n{name}: held-out audio ({len(val)} frames) as new audio, at each gain")
        print(f"{'gain':>6} | {'as heard: corr, mean opening':>30} | {'level-matched: corr, mean opening':>34}")
        for gain in args.gains:
            mel = mel_of(segment * 10 ** (gain / 20))
            row = []
            for heard in (mel, mel.at_level(p.loud)):
                ap_ = openings(model, heard, val - first, landmarks[val])
                row.append(f"{np.corrcoef(ap_, real)[0, 1]:.3f}, {np.nanmean(ap_):.3f}")
            print(f"{gain:+5.0f}  | {row[0]:>30} | {row[1]:>34}")
        alone = segment[: 3 * SR]
        tail = np.concatenate([alone, np.zeros(20 * SR, np.float32)])
        print(
            f"3 s of it heard {mel_of(alone).gain_to(p.loud):+.2f} dB; followed by 20 s of silence "
            f"{mel_of(tail).gain_to(p.loud):+.2f} dB"
        )
        n = voice.n_frames
        poses = landmarks[np.flatnonzero(face)[np.arange(n) % face.sum()]]  # the clip's poses, looped
        speech = ~silent_frames(voice.mel, PER_FRAME, p.loud)[:n]
        heard, matched = (
            openings(model, m, np.arange(n), poses)[speech].mean() for m in (voice, voice.at_level(p.loud))
        )
        real_speech = metrics["speech_opening"]["train_real"]
        level = -voice.gain_to(p.loud)
        print(
            f"{args.voice.name} ({level:+.1f} dB from {name}'s level) as new audio, mean opening where it speaks: as "
            f"heard {heard:.3f}, level-matched {matched:.3f}; {name} where he speaks (training block) {real_speech:.3f}"
        )


if __name__ == "__main__":
    main()
