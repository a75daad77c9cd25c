"""Stage preview: the fast path. The template re-voiced with real mouths of the recording, chosen by the shapes the
new audio asks for (the library alone: no generator) -> an H.264/AAC MP4, minutes after the data is prepared."""

import argparse

from common import load_params, run

from hygie_lib.audio import Mel
from hygie_lib.blend import BLENDS
from hygie_lib.crops import Crops
from hygie_lib.inference import MouthModel
from hygie_lib.io import check_choice
from hygie_lib.render import check_audio, render
from hygie_lib.retrieve import MouthLibrary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("library", help="library.npz from build_library: real mouths, the shape model, how crops were made")
    ap.add_argument("template", help="the template video")
    ap.add_argument("crops", help="the template's crops.npz from build_crops")
    ap.add_argument("audio", help="the new speech (any audio or video file): muxed into the output")
    ap.add_argument("mel", help="its mel.npz from compute_mel: what the shape model hears")
    ap.add_argument("out", help="output .mp4")
    args = ap.parse_args()
    p = load_params("render.blend", "render.batch", "render.match_level")
    check_choice("params.yaml render.blend", p.blend, BLENDS)
    library, mel = MouthLibrary.load(args.library), Mel.load(args.mel)
    model = MouthModel.from_library(library)
    model.check_mel(mel, args.mel)
    check_audio(args.audio)
    kw = {"blend": p.blend, "batch": p.batch, "mouth": "retrieve", "library": library, "match_level": p.match_level}
    seconds = render(model, Crops.load(args.crops), args.template, mel, args.audio, args.out, **kw)
    print(f"{args.out}: written; seconds per step " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    run(main)
