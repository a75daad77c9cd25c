"""Stage render: the prepared template re-voiced with the new audio -> an H.264/AAC MP4."""

import argparse

from common import load_params, run

from hygie_lib.audio import Mel
from hygie_lib.blend import BLENDS
from hygie_lib.crops import Crops
from hygie_lib.inference import BACKENDS, MouthModel
from hygie_lib.io import check_choice
from hygie_lib.render import MOUTHS, check_audio, render
from hygie_lib.retrieve import MouthLibrary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="checkpoint from the train stage")
    ap.add_argument("library", help="library.npz from build_library: real mouths (render.mouth retrieve, blend)")
    ap.add_argument("template", help="the template video")
    ap.add_argument("crops", help="the template's crops.npz from build_crops")
    ap.add_argument("audio", help="the new speech (any audio or video file): muxed into the output")
    ap.add_argument("mel", help="its mel.npz from compute_mel: what the model hears")
    ap.add_argument("out", help="output .mp4")
    args = ap.parse_args()
    p = load_params("render")
    check_choice("params.yaml render.mouth", p.mouth, MOUTHS)
    check_choice("params.yaml render.blend", p.blend, BLENDS)
    check_choice("params.yaml render.backend", p.backend, BACKENDS)
    model, mel = MouthModel(args.model, p.backend), Mel.load(args.mel)
    model.check_mel(mel, args.mel)
    check_audio(args.audio)
    library = None if p.mouth == "generate" else MouthLibrary.load(args.library)
    seconds = render(
        model,
        Crops.load(args.crops),
        args.template,
        mel,
        args.audio,
        args.out,
        blend=p.blend,
        batch=p.batch,
        mouth=p.mouth,
        library=library,
        match_level=p.match_level,
    )
    print(f"{args.out}: written; seconds per step " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    run(main)
