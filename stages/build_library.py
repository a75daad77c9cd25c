"""Stage build_library: the training block's real mouths and their shapes, for render.mouth retrieve and blend, and
the fast path (the preview stage renders from the library alone, before the generator has trained)."""

import argparse

from common import load_params, run

from hygie_lib.audio import Mel
from hygie_lib.audio2shape import ShapeModel
from hygie_lib.checkpoint import DataInfo
from hygie_lib.crops import Crops
from hygie_lib.retrieve import build_library
from hygie_lib.split import time_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("video", help="the training clip: the library keeps its pixels around each mouth")
    ap.add_argument("crops", help="crops.npz of the training clip")
    ap.add_argument("mel", help="mel.npz of the training clip (how the audio is heard)")
    ap.add_argument("shapes", help="shape.npz from train_shape")
    ap.add_argument("out", help="output library.npz")
    args = ap.parse_args()
    p = load_params("train.TRAIN_SPLIT")
    crops, shapes = Crops.load(args.crops), ShapeModel.load(args.shapes)
    frames = time_split(crops.face, train_split=p.TRAIN_SPLIT, gap=0).train_frames  # never a held-out mouth
    data = DataInfo.of(crops, Mel.load(args.mel), mel_win=0)
    library = build_library(crops, args.video, shapes, frames, data)
    library.save(args.out)
    print(f"{args.out}: {len(library.frames)} mouths of {crops.size}px")


if __name__ == "__main__":
    run(main)
