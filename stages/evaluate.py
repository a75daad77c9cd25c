"""Stage evaluate: the held-out block regenerated from its own audio, the cross check (the product's own test) and,
on the synthetic speaker, the render against ground truth -> metrics/eval.json, per-frame tables, a contact sheet
and a side-by-side video."""

import argparse
import json
from pathlib import Path

import cv2
import pandas as pd
from common import load_params, run

from hygie_lib.audio import Mel, read_wav
from hygie_lib.blend import BLENDS
from hygie_lib.crops import Crops
from hygie_lib.evaluate import cross_check, evaluate_heldout, evaluate_render
from hygie_lib.inference import MouthModel
from hygie_lib.io import HygieError, atomic_path, check_choice
from hygie_lib.render import MOUTHS
from hygie_lib.retrieve import MouthLibrary
from hygie_lib.syncnet import SyncExpert


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("video")
    ap.add_argument("prepared", help="folder with the clip's crops.npz, mel.npz and audio.wav")
    ap.add_argument("model", help="checkpoint from the train stage")
    ap.add_argument("sync", help="the sync expert from train_sync: judges the real, generated and rendered mouths")
    ap.add_argument("library", help="library.npz from build_library (render.mouth retrieve, blend)")
    ap.add_argument("metrics", help="output folder: eval.json, heldout.csv, cross.csv, cross_check.png")
    ap.add_argument("cross_video", help="output .mp4: the cross check, real | generated | template")
    ap.add_argument("--rendered", help="the render stage's output, judged against --new-mel (and --truth)")
    ap.add_argument("--new-mel", help="mel.npz of the render's audio")
    ap.add_argument("--truth", help="demo_truth.parquet of the synthetic speaker, used when the file exists")
    args = ap.parse_args()
    p = load_params(
        "train.TRAIN_SPLIT", "render.blend", "render.mouth", "evaluate.shift_seconds", "evaluate.cross_seconds"
    )
    check_choice("params.yaml render.blend", p.blend, BLENDS)
    check_choice("params.yaml render.mouth", p.mouth, MOUTHS)
    library = None if p.mouth == "generate" else MouthLibrary.load(args.library)
    prep, out = Path(args.prepared), Path(args.metrics)
    crops, mel = Crops.load(prep / "crops.npz"), Mel.load(prep / "mel.npz")
    model = MouthModel(args.model, "torch")
    model.check_mel(mel, prep / "mel.npz")
    audio, sr = read_wav(prep / "audio.wav")
    if sr != mel.sr:
        raise HygieError(f"{prep / 'audio.wav'}: {sr} Hz but its mel was made at {mel.sr} Hz; rerun `dvc repro`.")
    truth = {}
    if args.truth and Path(args.truth).is_file():  # the synthetic speaker's ground truth (not a DVC dep: optional)
        t = pd.read_parquet(args.truth)
        truth = {c: t[t["clip"] == c].sort_values("frame")["openness"].to_numpy() for c in ("train", "new_audio")}
    shift = round(p.shift_seconds * crops.fps)
    split = dict(train_split=p.TRAIN_SPLIT, blend=p.blend, shift=shift)
    metrics, heldout = evaluate_heldout(args.video, model, crops, mel, **split, truth=truth.get("train"))
    expert = SyncExpert.load(args.sync)
    cross, table, sheet = cross_check(
        args.video,
        model,
        crops,
        mel,
        audio,
        args.cross_video,
        **split,
        expert=expert,
        mouth=p.mouth,
        library=library,
        max_frames=round(p.cross_seconds * crops.fps),
    )
    metrics.update(cross)
    if args.rendered:
        new_mel = Mel.load(args.new_mel) if args.new_mel else None
        metrics.update(
            evaluate_render(args.rendered, crops.fps, truth=truth.get("new_audio"), expert=expert, mel=new_mel)
        )
    with atomic_path(out / "eval.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    for name, frame in (("heldout.csv", heldout), ("cross.csv", table)):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.5f")
    with atomic_path(out / "cross_check.png") as tmp:
        cv2.imwrite(str(tmp), sheet[..., ::-1])
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    run(main)
