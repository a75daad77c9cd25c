"""The `hygie` command: doctor, probe, demo-data, render, export-onnx. Each calls the library, like the DVC stages do."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from hygie_lib.io import HygieError, atomic_path


def _param(name: str, default: float) -> float:
    """A `section.KEY` value from ./params.yaml when there is one, else the default."""
    path = Path("params.yaml")
    if not path.is_file():
        return default
    section, key = name.split(".")
    return yaml.safe_load(path.read_text()).get(section, {}).get(key, default)


def cmd_doctor(args: argparse.Namespace) -> int:
    from hygie_lib.doctor import run_checks

    results = run_checks()
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        print(f"{'OK  ' if ok else 'FAIL'}  {name:<{width}}  {detail}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"\n{len(results) - failed} OK, {failed} FAIL")
    return 1 if failed else 0


def cmd_probe(args: argparse.Namespace) -> int:
    import cv2

    from hygie_lib.probe import probe_video

    image = probe_video(args.video, fps=args.fps, pad=args.pad, alpha=args.alpha, frames=args.frames)
    with atomic_path(args.out) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise HygieError(f"{args.out}: could not write the PNG; check the folder is writable.")
    print(f"{args.out}: first {args.frames} frames with lips (green), lip hull (blue), box (red), mask outline (yellow)")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from hygie_lib.synth import make_demo_data

    out = Path(args.out)
    names = ["train_video.mp4", "template_idle.mp4", "new_audio.wav", "demo_truth.parquet"]
    if not args.force and all((out / n).is_file() for n in names):
        print(f"{out}: demo data already there (use --force to make it again)")
        return 0
    paths = make_demo_data(out, seed=args.seed, train_seconds=args.seconds)
    for path in paths.values():
        print(path)
    return 0


def _prepared_crops(template: str) -> Path | None:
    """The pipeline's crops.npz for `template` when dvc.yaml lists it (vars: videos) and it has been prepared."""
    path = Path("dvc.yaml")
    if not path.is_file():
        return None
    for var in yaml.safe_load(path.read_text()).get("vars", []):
        for key, video in (var.get("videos", {}) if isinstance(var, dict) else {}).items():
            crops = Path("data/prepared") / key / "crops.npz"
            if Path(video).resolve() == Path(template).resolve() and crops.is_file():
                return crops
    return None


def cmd_render(args: argparse.Namespace) -> int:
    from hygie_lib.io import require_file
    from hygie_lib.render import Template, audio_features, prepare_template, render
    from hygie_lib.runtime import MouthModel
    from hygie_lib.video import count_frames, probe_video

    require_file(args.template, "template video", "Give the path of a video of the person idling.")
    model = MouthModel(args.model, args.backend)
    d = model.data
    mel, audio = audio_features(require_file(args.audio, "audio file", "Give the path of the speech to lip-sync."), d)
    if args.prepared:
        crops = require_file(Path(args.prepared) / "crops.npz", "prepared template", "Run `dvc repro`, or leave out --prepared.")
    else:
        crops = _prepared_crops(args.template)
    template = Template.load(crops) if crops else None
    n_frames = count_frames(probe_video(args.template).duration, d["fps"])
    usable = template is not None and len(template.crops) == n_frames and template.fits(d)
    if not usable:
        print(f"{args.template}: preparing the template (landmarks and crops) with the model's params")
        template = prepare_template(args.template, fps=d["fps"], size=d["img_size"], pad=d["mouth_pad"],
                                    alpha=args.alpha, min_confidence=args.min_confidence)
    else:
        print(f"{args.template}: using the prepared {crops}")
    t = time.perf_counter()
    render(model, template, args.template, mel, audio, args.out, fps=d["fps"], blend=args.blend, batch=args.batch)
    n = mel.shape[1] // d["mel_per_frame"]
    print(f"{args.out}: {n} frames in {time.perf_counter() - t:.1f} s")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from hygie_lib.runtime import export_onnx
    from hygie_lib.train import load_checkpoint

    model, ckpt = load_checkpoint(args.model)
    data = export_onnx(model, {"config": ckpt["config"], "data": ckpt["data"]})
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(data)
    print(f"{args.out}: ONNX model ({len(data) / 1e6:.1f} MB); use it with `hygie render --model {args.out}`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `hygie` and its subcommands."""
    ap = argparse.ArgumentParser(prog="hygie", description="HygieSync: person-specific lip-sync.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="check the installation: imports, device, FaceMesh, audio/video I/O, blending")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("probe", help="PNG of a video's first frames with lip landmarks, hull, mouth box and mask")
    p.add_argument("video")
    p.add_argument("--out", default="probe.png", help="output PNG (default: probe.png)")
    p.add_argument("--frames", type=int, default=4, help="how many first frames (default: 4)")
    p.add_argument("--fps", type=float, default=_param("video.fps", 25))
    p.add_argument("--pad", type=float, default=_param("build_crops.MOUTH_PAD", 0.5))
    p.add_argument("--alpha", type=float, default=_param("build_crops.EMA_ALPHA", 0.7))
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("demo-data", help="write the synthetic demo speaker into data/raw/")
    p.add_argument("--out", default="data/raw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=120.0, help="length of the training video (default: 120)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("render", help="re-voice a template video with new audio -> MP4 (H.264 + AAC)")
    p.add_argument("--model", required=True, help="checkpoint (models/best.pt) or ONNX export")
    p.add_argument("--template", required=True, help="video of the same person idling")
    p.add_argument("--audio", required=True, help="the new speech: any audio or video file")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--prepared", help="folder with the template's crops.npz (default: the pipeline's, if dvc.yaml lists it)")
    p.add_argument("--blend", choices=["poisson", "feather"], default=_param("render.blend", "poisson"))
    p.add_argument("--backend", choices=["onnx", "torch"], default=_param("render.backend", "onnx"))
    p.add_argument("--batch", type=int, default=_param("render.batch", 32), help="frames per model call")
    p.add_argument("--alpha", type=float, default=_param("build_crops.EMA_ALPHA", 0.7), help="box smoothing, if preparing")
    p.add_argument("--min-confidence", type=float, default=_param("detect_landmarks.min_confidence", 0.5))
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("export-onnx", help="export a checkpoint to ONNX, for ONNX Runtime or other runtimes")
    p.add_argument("--model", default="models/best.pt")
    p.add_argument("--out", default="models/best.onnx")
    p.set_defaults(func=cmd_export_onnx)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hygie` console command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HygieError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
