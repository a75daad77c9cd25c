"""Stage render: the prepared template re-voiced with the new audio -> an H.264/AAC MP4."""
import argparse

import numpy as np
from common import load_params, run

from hygie_lib.audio import load_audio
from hygie_lib.render import AUDIO_SR, Template, check_audio, render
from hygie_lib.runtime import MouthModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="checkpoint from the train stage")
    ap.add_argument("template", help="the template video")
    ap.add_argument("crops", help="the template's crops.npz from build_crops")
    ap.add_argument("audio", help="the new speech (any audio or video file): muxed into the output")
    ap.add_argument("mel", help="its mel.npy from compute_mel: what the model hears")
    ap.add_argument("out", help="output .mp4")
    args = ap.parse_args()
    p = load_params("video.fps", "render.blend", "render.backend", "render.batch")
    audio = load_audio(args.audio, AUDIO_SR)
    check_audio(audio, args.audio)
    seconds = render(MouthModel(args.model, p.backend), Template.load(args.crops), args.template, np.load(args.mel), audio,
                     args.out, fps=p.fps, blend=p.blend, batch=p.batch)
    print(f"{args.out}: written; seconds per step " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    run(main)
