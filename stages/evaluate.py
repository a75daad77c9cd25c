"""Stage evaluate: regenerate the held-out frames' mouths from their audio, paste back, measure -> metrics/eval.json."""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from common import load_params, run

from hygie_lib.audio import Mel
from hygie_lib.blend import BLENDS
from hygie_lib.crops import Crops
from hygie_lib.evaluate import evaluate_heldout, evaluate_render
from hygie_lib.inference import MouthModel
from hygie_lib.io import atomic_path, check_choice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("video")
    ap.add_argument("prepared", help="folder with the clip's crops.npz, landmarks.npz and mel.npz")
    ap.add_argument("model", help="checkpoint from the train stage")
    ap.add_argument("out_json")
    ap.add_argument("out_csv", help="per-frame apertures, for dvc plots")
    ap.add_argument(
        "--rendered", help="the render stage's output: with --truth, checks its mouth follows the new audio"
    )
    ap.add_argument("--truth", help="demo_truth.parquet of the synthetic speaker, used when the file exists")
    args = ap.parse_args()
    p = load_params("train.TRAIN_SPLIT", "render.blend", "evaluate.shift_seconds")
    check_choice("params.yaml render.blend", p.blend, BLENDS)
    prep = Path(args.prepared)
    crops = Crops.load(prep / "crops.npz")
    truth = None
    if args.truth and Path(args.truth).is_file():  # the synthetic speaker's ground truth (not a DVC dep: optional)
        t = pd.read_parquet(args.truth)
        truth = {
            clip: t[t["clip"] == clip].sort_values("frame")["openness"].to_numpy() for clip in ("train", "new_audio")
        }
    model, mel = MouthModel(args.model, "torch"), Mel.load(prep / "mel.npz")
    model.check_mel(mel, prep / "mel.npz")
    metrics, table = evaluate_heldout(
        args.video,
        model,
        crops,
        np.load(prep / "landmarks.npz")["landmarks"],
        mel,
        train_split=p.TRAIN_SPLIT,
        blend=p.blend,
        shift=round(p.shift_seconds * crops.fps),
        truth=None if truth is None else truth["train"],
    )
    if truth is not None and args.rendered:
        metrics.update(evaluate_render(args.rendered, crops.fps, truth["new_audio"]))
    with atomic_path(args.out_json) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    with atomic_path(args.out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    run(main)
