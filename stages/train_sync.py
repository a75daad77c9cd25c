"""Stage train_sync: the sync expert, trained on the user's own recording -> models/sync.pt."""

import argparse
import json

from common import load_params, run

from hygie_lib.audio import Mel
from hygie_lib.audio2shape import ShapeModel
from hygie_lib.crops import Crops
from hygie_lib.io import atomic_path
from hygie_lib.syncnet import learn_sync


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("crops", help="crops.npz of the training clip")
    ap.add_argument("mel", help="mel.npz of the training clip")
    ap.add_argument("shapes", help="shape.npz from train_shape (the recording's A/V offset)")
    ap.add_argument("out", help="output sync.pt")
    ap.add_argument("metrics", help="json: loss, and the offset and confidence it finds on the held-out block")
    args = ap.parse_args()
    p = load_params("train.TRAIN_SPLIT", "train_sync.steps", "train_sync.seed")
    expert, metrics = learn_sync(
        Crops.load(args.crops),
        Mel.load(args.mel),
        ShapeModel.load(args.shapes),
        train_split=p.TRAIN_SPLIT,
        steps=p.steps,
        seed=p.seed,
    )
    expert.save(args.out)
    with atomic_path(args.metrics) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    print(
        f"{args.out}: held-out block judged {metrics['heldout_offset_raw']} frames late as recorded, "
        f"{metrics['heldout_offset_corrected']} once corrected (confidence {metrics['heldout_confidence']})"
    )


if __name__ == "__main__":
    run(main)
