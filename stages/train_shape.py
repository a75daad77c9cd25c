"""Stage train_shape: the speaker's mouth shapes, audio -> shape, and the recording's A/V offset -> models/shape.npz."""

import argparse
import json

from common import load_params, run

from hygie_lib.audio import Mel
from hygie_lib.audio2shape import learn_shapes
from hygie_lib.crops import Crops
from hygie_lib.io import HygieError, atomic_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("crops", help="crops.npz of the training clip (its landmarks are used)")
    ap.add_argument("mel", help="mel.npz of the training clip")
    ap.add_argument("out", help="output shape.npz")
    ap.add_argument("metrics", help="json: the A/V offset found, and how well audio predicts the mouth")
    args = ap.parse_args()
    p = load_params(
        "train.TRAIN_SPLIT",
        "train_shape.av_offset",
        "train_shape.components",
        "train_shape.window",
        "train_shape.smooth",
    )
    if p.av_offset != "auto" and not isinstance(p.av_offset, int):
        raise HygieError(f"params.yaml train_shape.av_offset: {p.av_offset!r} is neither `auto` nor a whole number.")
    crops, mel = Crops.load(args.crops), Mel.load(args.mel)
    model, metrics = learn_shapes(
        crops.landmarks,
        crops.face,
        mel.mel,
        mel.per_frame,
        train_split=p.TRAIN_SPLIT,
        components=p.components,
        half=p.window,
        smooth=p.smooth,
        av_offset=p.av_offset,
    )
    model.save(args.out)
    with atomic_path(args.metrics) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    confidence = f" (confidence {metrics['av_offset_confidence']})" if "av_offset_confidence" in metrics else ""
    print(
        f"{args.out}: audio lags video by {model.offset} frames{confidence}; held-out aperture corr "
        f"{metrics['aperture_corr']}"
    )


if __name__ == "__main__":
    run(main)
