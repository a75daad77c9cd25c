"""Stage evaluate: regenerate the held-out frames' mouths from their audio, paste back, measure -> metrics/eval.json."""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from common import load_params, run

from hygie_lib.evaluate import evaluate_clip, sync, video_apertures
from hygie_lib.io import HygieError, atomic_path
from hygie_lib.runtime import MouthModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("video")
    ap.add_argument("prepared", help="folder with the clip's crops.npz, landmarks.npz and mel.npy")
    ap.add_argument("model", help="checkpoint from the train stage")
    ap.add_argument("out_json")
    ap.add_argument("out_csv", help="per-frame apertures, for dvc plots")
    ap.add_argument("--rendered", help="the render stage's output: with --truth, checks its mouth follows the new audio")
    ap.add_argument("--truth", help="demo_truth.parquet of the synthetic speaker, used when the file exists")
    args = ap.parse_args()
    p = load_params("video.fps", "compute_mel.MEL_PER_FRAME", "train.TRAIN_SPLIT", "render.blend", "evaluate.shift_seconds")
    model = MouthModel(args.model, "torch")
    prep = Path(args.prepared)
    prepared = dict(np.load(prep / "crops.npz"))
    if model.data["img_size"] != prepared["crops"].shape[1]:
        raise HygieError(f"{args.model}: trained on {model.data['img_size']}px crops but {prep} has "
                         f"{prepared['crops'].shape[1]}px ones; rerun `dvc repro`.")
    truth = None
    if args.truth and Path(args.truth).is_file():  # the synthetic speaker's ground truth (not a DVC dep: optional)
        t = pd.read_parquet(args.truth)
        truth = {clip: t[t["clip"] == clip].sort_values("frame")["openness"].to_numpy() for clip in ("train", "new_audio")}
    metrics, table = evaluate_clip(
        args.video, model, prepared, np.load(prep / "landmarks.npz")["landmarks"], np.load(prep / "mel.npy"),
        fps=p.fps, per_frame=p.MEL_PER_FRAME, train_split=p.TRAIN_SPLIT, blend=p.blend,
        shift=round(p.shift_seconds * p.fps), truth=None if truth is None else truth["train"],
    )
    if truth is not None and args.rendered:  # the product itself: the idle template re-voiced with the new audio
        rendered = video_apertures(args.rendered, p.fps)
        n = min(len(rendered), len(truth["new_audio"]))
        metrics["render_truth_corr"], metrics["render_sync_offset"] = sync(rendered[:n], truth["new_audio"][:n])
        metrics["render_truth_corr"] = round(metrics["render_truth_corr"], 4)
    with atomic_path(args.out_json) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    with atomic_path(args.out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    run(main)
