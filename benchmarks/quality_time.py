"""Quality versus training time: what a user has after N minutes of training on a 5-minute recording.

The demo speaker made --seconds long (default 300), prepared as the pipeline prepares it (params.yaml's settings,
crop side --size). Then, on a clock that counts training alone (preparing, rendering and judging are not counted):
  fast path   train_shape (audio -> mouth shape) and build_library, then the new audio rendered with real mouths
              of the recording (render.mouth retrieve): usable seconds after the data is prepared;
  generator   the train stage's fit with params.yaml's train settings (--steps to change the budget), its best
              checkpoint rendered (render.mouth generate) and judged at the first validation past each of --minutes
              (validating every --eval-every steps; train.patience scaled to stop after as many steps).
Each row: the rendered video's mouth aperture against the synthetic speaker's ground truth (render_truth_corr, the
demo target is >= 0.95) and the sync expert's confidence in it. Rows print as they come, and go to --out/table.csv.
Training stops at the last of --minutes unless --full (the whole budget, timed end to end); --resume continues an
interrupted run in --out (its recording, prepared data and sync expert read back; the clock goes on from where it
stopped).
Usage: python benchmarks/quality_time.py [--seconds 300] [--size 160] [--steps 5000] [--minutes 5 10 20 30 60]
       [--eval-every 100] [--full] [--resume] [--out /tmp/quality_time]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wallclock import AtMinutes, Enough  # noqa: E402

from hygie_lib.audio import Mel, load_audio  # noqa: E402
from hygie_lib.audio2shape import learn_shapes  # noqa: E402
from hygie_lib.checkpoint import DataInfo  # noqa: E402
from hygie_lib.crops import build_crops  # noqa: E402
from hygie_lib.evaluate import evaluate_render  # noqa: E402
from hygie_lib.inference import MouthModel  # noqa: E402
from hygie_lib.landmarks import detect_video  # noqa: E402
from hygie_lib.model import model_config  # noqa: E402
from hygie_lib.render import render  # noqa: E402
from hygie_lib.retrieve import build_library  # noqa: E402
from hygie_lib.split import time_split  # noqa: E402
from hygie_lib.syncnet import SyncExpert, learn_sync  # noqa: E402
from hygie_lib.synth import make_demo_data  # noqa: E402
from hygie_lib.train import NoLive, TrainConfig, fit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0, help="length of the recording")
    ap.add_argument("--size", type=int, help="crop side (default: params.yaml's build_crops.IMG_SIZE)")
    ap.add_argument("--steps", type=int, help="training budget (default: params.yaml's train.steps)")
    ap.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20, 30, 60])
    ap.add_argument("--eval-every", type=int, default=100, help="steps between validations (checkpoint resolution)")
    ap.add_argument("--full", action="store_true", help="train the whole budget, past the last of --minutes")
    ap.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    ap.add_argument("--out", type=Path, default=Path("/tmp/quality_time"))
    args = ap.parse_args()
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    c, m, t, s = p["build_crops"], p["compute_mel"], p["train"], p["train_shape"]
    size, fps, sr = args.size or c["IMG_SIZE"], float(p["video"]["fps"]), p["extract_audio"]["SR"]
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    if args.resume:
        names = {"train_video": "train_video.mp4", "template": "template_idle.mp4", "new_audio": "new_audio.wav"}
        raw = {k: args.out / "raw" / n for k, n in {**names, "truth": "demo_truth.parquet"}.items()}
    else:
        raw = make_demo_data(args.out / "raw", train_seconds=args.seconds, audio_seconds=20.0, progress=False)
    truth = pd.read_parquet(raw["truth"])
    truth = truth[truth["clip"] == "new_audio"].sort_values("frame")["openness"].to_numpy()
    made = time.perf_counter()
    mel_of = lambda path: Mel.of(  # noqa: E731
        load_audio(path, sr), sr, fps=fps, n_mels=m["N_MELS"], per_frame=m["MEL_PER_FRAME"], n_fft=m["N_FFT"]
    )
    if not args.resume:
        landmarks = detect_video(raw["train_video"], fps, progress=False)
        crops = build_crops(raw["train_video"], landmarks, fps, size=size, pad=c["MOUTH_PAD"], alpha=c["EMA_ALPHA"])
        mel = mel_of(raw["train_video"])
    new_mel = mel_of(raw["new_audio"])
    template = build_crops(
        raw["template"],
        detect_video(raw["template"], fps, progress=False),
        fps,
        size=size,
        pad=c["MOUTH_PAD"],
        alpha=c["EMA_ALPHA"],
        progress=False,
    )
    print(
        f"{args.seconds:.0f} s recording at {size} px: made in {made - t0:.0f} s, prepared in "
        f"{time.perf_counter() - made:.0f} s (not counted below)\n"
    )
    table = args.out / "table.csv"  # a resumed run adds its rows to those of the run it continues
    rows: list[dict] = pd.read_csv(table).to_dict("records") if args.resume and table.is_file() else []

    def judge(what: str, minutes: float, model: MouthModel, mouth: str, library=None) -> None:
        video = args.out / f"{what.replace(' ', '_')}.mp4"
        render(
            model,
            template,
            raw["template"],
            new_mel,
            raw["new_audio"],
            video,
            mouth=mouth,
            library=library,
            progress=False,
        )
        verdict = evaluate_render(video, fps, truth=truth, expert=expert, mel=new_mel)
        rows.append({"what": what, "training_minutes": round(minutes, 2), **verdict})
        print(
            f"{what:<28}{minutes:>9.2f} min  render_truth_corr {verdict['render_truth_corr']:.3f}  "
            f"sync confidence {verdict['render_sync_confidence']:.3f}",
            flush=True,
        )
        pd.DataFrame(rows).to_csv(table, index=False)

    if args.resume:
        expert = SyncExpert.load(args.out / "sync.pt")
    else:
        clock = time.perf_counter()  # the fast path: shapes and the library
        shapes, _ = learn_shapes(
            crops.landmarks,
            crops.face,
            mel.mel,
            mel.per_frame,
            train_split=t["TRAIN_SPLIT"],
            components=s["components"],
            half=s["window"],
            smooth=s["smooth"],
            av_offset=s["av_offset"],
        )
        frames = time_split(crops.face, train_split=t["TRAIN_SPLIT"], gap=0).train_frames
        library = build_library(crops, raw["train_video"], shapes, frames, DataInfo.of(crops, mel, mel_win=0), False)
        fast_minutes = (time.perf_counter() - clock) / 60
        clock = time.perf_counter()
        expert, _ = learn_sync(crops, mel, shapes, train_split=t["TRAIN_SPLIT"], steps=p["train_sync"]["steps"])
        print(f"sync expert (the judge, and the generator's early stopping): {time.perf_counter() - clock:.0f} s")
        judge("fast path (retrieve)", fast_minutes, MouthModel.from_library(library), "retrieve", library)

        for obj, name in ((crops, "crops.npz"), (mel, "mel.npz"), (shapes, "shape.npz"), (expert, "sync.pt")):
            obj.save(args.out / name)
    budget = {"steps": args.steps or t["steps"], "eval_every": args.eval_every}
    cfg = TrainConfig.of({**t, **budget, "patience": t["patience"] * t["eval_every"] // args.eval_every})  # in steps
    checkpoint = AtMinutes(
        args.minutes,
        lambda step, minutes: judge(f"generator, step {step}", minutes, MouthModel(args.out / "best.pt"), "generate"),
        to_the_end=args.full,
    )

    model = model_config(t)
    try:
        summary = fit(
            args.out / "crops.npz",
            args.out / "mel.npz",
            args.out / "shape.npz",
            args.out / "sync.pt",
            model_kwargs=model,
            cfg=cfg,
            models_dir=args.out,
            live=NoLive(),
            resume=args.resume,
            on_validation=checkpoint,
        )
        judge(
            f"generator, done ({summary['steps']} steps)",
            summary["minutes"],
            MouthModel(args.out / "best.pt"),
            "generate",
        )
    except Enough:
        pass
    print("\n" + pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
