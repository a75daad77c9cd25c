"""The `hygie` command: doctor, probe, demo-data. Each subcommand calls the library, like the DVC stages do."""
from __future__ import annotations

import argparse
import sys
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
