"""The real-speakers table: each clip of ../shared/data/real through the pipeline's library calls and its cross check.

For each clip: prepare (landmarks, crops, mel), train_shape (A/V offset, audio -> shape), train_sync (the sync
expert), train (the generator) on the first TRAIN_SPLIT of the clip, and evaluate's cross check on the rest
(played backwards as the template, its audio forwards), once per render.mouth mode. Prints one row per clip and
mode; writes each one's contact sheet and side-by-side video into --out (--reuse: cross checks of the models
already trained there). On 2 cores at 160 px: about 18 minutes for obama_20s (25 with the GAN) and 8 for each
8 s clip, plus 1 per extra mode. Beside evaluate's metrics, the teeth figures on the open frames with speech alone
(teeth_ratio_speech, teeth_ceiling_speech): in silence the mouth rests closed, whatever the real one did. Before
each clip's rows, its mouths' mean opening where the audio speaks, real and predicted (train_shape's speech_opening):
a held-out block spoken more open than the training block shows there, which the audio learnt from cannot teach.
--voice WAV: also the whole clip re-voiced by another speaker's speech (e.g. ../shared/data/real/speech_en_60s.wav),
as render hears new audio, with the first of --mouths: a row with the sync expert's confidence, a line with its lag,
and new_voice_MOUTH.png (the clip's mouths over the re-voiced ones at 8 moments).
Quality versus time (--minutes): the fast path (the shape model and the library, render.mouth retrieve) first, then
the generator's best checkpoint at the first validation past each of --minutes of training (validating every
--eval-every steps), each cross-checked; the minutes column then counts training alone, as benchmarks/quality_time.py
does for the demo speaker, e.g. --clips obama_20s --steps 5000 --eval-every 100 --minutes 5 10 20.
Usage: python benchmarks/real_speakers.py [--clips obama_20s ...] [--steps 1000] [--eval-every N] [--size 160]
       [--cond shape] [--w-sync 0] [--w-gan 0] [--warp | --no-warp] [--ref-near 0.5] [--seed 0]
       [--mouths generate retrieve blend] [--blend poisson] [--reuse] [--minutes 5 10 20] [--voice WAV]
       [--out /tmp/real_speakers]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wallclock import AtMinutes, Enough  # noqa: E402

from hygie_lib.audio import Mel, load_audio, write_wav  # noqa: E402
from hygie_lib.audio2shape import learn_shapes  # noqa: E402
from hygie_lib.blend import BLENDS  # noqa: E402
from hygie_lib.checkpoint import DataInfo  # noqa: E402
from hygie_lib.crops import Crops, build_crops, crop  # noqa: E402
from hygie_lib.evaluate import cross_check  # noqa: E402
from hygie_lib.inference import MouthModel  # noqa: E402
from hygie_lib.landmarks import detect_video  # noqa: E402
from hygie_lib.metrics import teeth_figures  # noqa: E402
from hygie_lib.model import model_config  # noqa: E402
from hygie_lib.render import render  # noqa: E402
from hygie_lib.retrieve import MouthLibrary, build_library  # noqa: E402
from hygie_lib.split import heldout_gap, time_split  # noqa: E402
from hygie_lib.syncnet import SyncExpert, judge_video, learn_sync  # noqa: E402
from hygie_lib.train import NoLive, TrainConfig, fit  # noqa: E402
from hygie_lib.video import iter_frames  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
MEL_WIN = 16  # the generator's mel window (train.MEL_WIN), which also sets the held-out block's gap
CLIPS = ["obama_20s", "hdtf_katiehill_8s", "hdtf_radio2_8s", "hdtf_radio34_8s", "hdtf_menendez_8s"]
COLUMNS = [
    "av_offset",
    "av_offset_confidence",
    "aperture_corr",
    "cross_corr",
    "cross_lag",
    "leak_corr",
    "cross_corr_shifted",
    "sync_confidence",
    "sync_confidence_real",
    "open_in_silence",
    "open_in_silence_real",
    "sharpness_ratio",
    "lip_sharpness_ratio",
    "teeth_ratio",
    "teeth_ceiling",
    "teeth_ratio_speech",
    "teeth_ceiling_speech",
]


def run_clip(name: str, args: argparse.Namespace) -> dict:
    """One clip through prepare, train_shape, train_sync, train and the cross check; its metrics by row."""
    video, work = REAL / f"{name}.mp4", args.out / name
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    landmarks = detect_video(video, 25.0, progress=False)
    crops = build_crops(video, landmarks, 25.0, size=args.size, pad=1.3, alpha=0.7, progress=False)
    audio = load_audio(video, 16000)
    mel = Mel.of(audio, 16000, fps=25.0, n_mels=80, per_frame=4, n_fft=512)
    clock = time.perf_counter()  # the fast path: the shape model and the library (with the generator's split)
    shapes, shape_metrics = learn_shapes(
        crops.landmarks, crops.face, mel.mel, 4, train_split=args.split, components=8, half=2, smooth=1.0
    )
    o = {k: "-" if v is None else f"{v:.3f}" for k, v in shape_metrics["speech_opening"].items()}
    print(
        f"{name}: mouth opening where the audio speaks (eye distances), real / predicted: training block "
        f"{o['train_real']} / {o['train_predicted']}, held out {o['heldout_real']} / {o['heldout_predicted']}"
    )
    data = DataInfo.of(crops, mel, mel_win=MEL_WIN)
    split = time_split(crops.face, train_split=args.split, gap=heldout_gap(MEL_WIN, mel.per_frame, shapes.offset))
    library = build_library(crops, video, shapes, split.train_frames, data, False)
    fast_minutes = (time.perf_counter() - clock) / 60
    expert, _ = learn_sync(crops, mel, shapes, train_split=args.split, steps=400)
    for obj, file in ((crops, "crops.npz"), (mel, "mel.npz"), (shapes, "shape.npz"), (expert, "sync.pt")):
        obj.save(work / file)
    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    overrides = {
        "w_sync": args.w_sync,
        "w_gan": args.w_gan,
        "gan_warmup": args.gan_warmup,
        "ref_near": train["ref_near"] if args.ref_near is None else args.ref_near,
        "TRAIN_SPLIT": args.split,
        "seed": args.seed,
    }
    budget = {"steps": args.steps, "eval_every": args.eval_every or args.steps // 10, "patience": 0}
    cfg = TrainConfig.of({**train, **overrides, **budget, "MEL_WIN": MEL_WIN, "lr": 0.002})  # 2x lr: short clips
    model_kwargs = model_config({**train, "cond": args.cond, "warp": train["warp"] if args.warp is None else args.warp})
    rows = {}

    def judge(row: str, model: MouthModel, mouth: str, minutes: float) -> None:
        tag = f"{mouth}_{args.blend}" if row == mouth else f"{row.replace(' ', '_')}_{mouth}_{args.blend}"
        metrics, table, sheet = cross_check(
            video,
            model,
            crops,
            mel,
            audio,
            work / f"cross_check_{tag}.mp4",
            train_split=args.split,
            blend=args.blend,
            shift=25,
            expert=expert,
            mouth=mouth,
            library=library,
            progress=False,
        )
        cv2.imwrite(str(work / f"cross_check_{tag}.png"), sheet[..., ::-1])
        table.to_csv(work / f"cross_{tag}.csv", index=False)
        keep = ("av_offset", "av_offset_confidence", "aperture_corr", "speech_opening")
        metrics.update({k: shape_metrics[k] for k in keep})
        speech = (table.real_open & ~table.silent).to_numpy()  # the teeth where the audio can tell the opening
        teeth = teeth_figures(
            *(table[c].to_numpy() for c in ("real_teeth", "gen_teeth", "real_aperture", "gen_aperture")), speech
        )
        metrics.update(
            teeth_ratio_speech=round(teeth["teeth_ratio"], 4), teeth_ceiling_speech=round(teeth["teeth_ceiling"], 4)
        )
        rows[row] = {**metrics, "minutes": round(minutes, 1)}
        (work / "metrics.json").write_text(json.dumps(rows, indent=2))

    if args.minutes:
        judge("fast path", MouthModel.from_library(library), "retrieve", fast_minutes)
    checkpoint = AtMinutes(
        args.minutes or [],
        lambda step, minutes: judge(f"step {step}", MouthModel(work / "best.pt"), args.mouths[0], minutes),
    )

    if not (args.reuse and (work / "best.pt").is_file()):
        try:
            fit(
                work / "crops.npz",
                work / "mel.npz",
                work / "shape.npz",
                work / "sync.pt",
                model_kwargs=model_kwargs,
                cfg=cfg,
                models_dir=work,
                live=NoLive(),
                on_validation=checkpoint,
            )
        except Enough:
            return rows
    model = MouthModel(work / "best.pt")
    for mouth in args.mouths:
        judge(mouth, model, mouth, (time.perf_counter() - t0) / 60)
    if args.voice:
        verdict = new_voice(video, work, model, crops, library, expert, args.voice, args.mouths[0])
        rows[f"{args.mouths[0]}, new voice"] = {**verdict, "minutes": round((time.perf_counter() - t0) / 60, 1)}
        (work / "metrics.json").write_text(json.dumps(rows, indent=2))
        print(
            f"{name}, {args.mouths[0]}, re-voiced by {args.voice.name} (heard {verdict['gain_db']:+.1f} dB): the sync "
            f"expert's lag {verdict['sync_lag']}, confidence {verdict['sync_confidence']:.3f}"
        )
    return rows


def new_voice(
    video: Path,
    work: Path,
    model: MouthModel,
    crops: Crops,
    library: MouthLibrary,
    expert: SyncExpert,
    voice: Path,
    mouth: str,
) -> dict:
    """The whole clip as the template, re-voiced by another speaker's speech (`voice`, cut to the clip's length):
    the sync expert's lag and confidence, and new_voice_MOUTH.png, the template's mouths over the re-voiced ones."""
    fps, sr = crops.fps, 16000
    y = load_audio(voice, sr)[: round(len(crops.crops) / fps * sr)]
    write_wav(work / "new_voice.wav", y, sr)
    mel = Mel.of(y, sr, fps=fps, n_mels=80, per_frame=4, n_fft=512)
    out = work / f"new_voice_{mouth}.mp4"
    render(model, crops, video, mel, work / "new_voice.wav", out, mouth=mouth, library=library, progress=False)
    verdict = judge_video(expert, out, expert.mel(y).mel, fps)
    ks = np.linspace(0, mel.n_frames - 1, 8).round().astype(int)
    drawn = [crop(f, crops.boxes[k], crops.size) for k, f in enumerate(iter_frames(out, fps)) if k in ks]
    sheet = np.vstack([np.hstack(crops.crops[ks]), np.hstack(drawn)])
    cv2.imwrite(str(work / f"new_voice_{mouth}.png"), sheet[..., ::-1])
    return {
        "sync_lag": verdict["offset"],
        "sync_confidence": round(verdict["confidence"], 4),
        "gain_db": round(mel.gain_to(model.shapes.predictor.loud), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=CLIPS)
    ap.add_argument("--steps", type=int, default=1000, help="training steps (about 40 passes over obama_20s)")
    ap.add_argument("--eval-every", type=int, help="steps between validations (default: a tenth of --steps)")
    ap.add_argument("--minutes", type=float, nargs="+", help="quality versus time: cross-check at these minutes")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--cond", default="shape", choices=["shape", "audio"])
    ap.add_argument("--w-sync", type=float, default=0.0)
    ap.add_argument("--w-gan", type=float, default=0.0)
    ap.add_argument(
        "--warp", action=argparse.BooleanOptionalAction, default=None, help="train.warp (default: params.yaml's)"
    )
    ap.add_argument("--ref-near", type=float, help="train.ref_near (default: params.yaml's)")
    ap.add_argument("--gan-warmup", type=int, default=250, help="steps before the adversary joins")
    ap.add_argument("--seed", type=int, default=0, help="train.seed: the generator's initialisation and batches")
    ap.add_argument(
        "--mouths",
        nargs="+",
        default=["generate"],
        choices=["generate", "retrieve", "blend"],
        help="render.mouth modes to cross-check (the first goes in the table's main columns)",
    )
    ap.add_argument("--blend", default="poisson", choices=list(BLENDS), help="render.blend of the cross checks")
    ap.add_argument("--reuse", action="store_true", help="keep a clip's trained best.pt in --out: cross checks only")
    ap.add_argument("--split", type=float, default=0.75, help="share of each clip that trains (the rest is held out)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/real_speakers"))
    ap.add_argument("--voice", type=Path, help="also re-voice each clip with this speech, e.g. real/speech_en_60s.wav")
    args = ap.parse_args()
    if not REAL.is_dir():
        sys.exit(f"{REAL}: the real clips are not here.")
    print(
        f"cond {args.cond}, w_sync {args.w_sync}, {args.size} px, {args.steps} steps, train on the first "
        f"{args.split:.0%}\n"
    )
    print(f"{'clip, render.mouth':<28}" + "".join(f"{c:>22}" for c in COLUMNS) + f"{'minutes':>9}")
    for name in args.clips:
        for what, m in run_clip(name, args).items():
            row = f"{name}, {what}"
            print(f"{row:<28}" + "".join(f"{m.get(c, float('nan')):>22}" for c in COLUMNS) + f"{m['minutes']:>9}")


if __name__ == "__main__":
    main()
