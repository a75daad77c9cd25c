"""The `hygie` command: doctor, probe, demo-data, render, say, serve, sync, export-onnx. Each calls the library.

Every command checks its output path and options before doing any work, and reports a problem as one
`error:` line (exit code 2). No command reads params.yaml: options have documented defaults.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hygie_lib.io import HygieError, atomic_path, check_folder, check_output, one_line_warnings, require_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def positive(kind: type) -> Callable[[str], float]:
    """An argparse type: a number of `kind` above zero."""

    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


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

    check_output(args.out, suffixes=IMAGE_SUFFIXES, inputs=[args.video])
    image, side = probe_video(args.video, fps=args.fps, pad=args.pad, alpha=args.alpha, frames=args.frames)
    with atomic_path(args.out) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise HygieError(f"{args.out}: could not write the image; check the folder is writable.")
    drawn = "lips (green), lip hull (blue), jaw (magenta), box (red), mask (yellow)"
    print(f"{args.out}: the first {args.frames} frames with {drawn}")
    print(f"mouth box: {side:.0f} px; an IMG_SIZE up to that keeps the mouth's detail (README, 'Sharp mouths')")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from hygie_lib.synth import make_demo_data

    out = check_folder(args.out)
    names = ["train_video.mp4", "template_idle.mp4", "new_audio.wav", "demo_truth.parquet"]
    if not args.force and all((out / n).is_file() for n in names):
        print(f"{out}: demo data already there (use --force to make it again)")
        return 0
    paths = make_demo_data(out, seed=args.seed, train_seconds=args.seconds)
    for path in paths.values():
        print(path)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from hygie_lib.crops import Crops
    from hygie_lib.inference import MouthModel
    from hygie_lib.render import audio_features, check_template_video, prepare_template, render
    from hygie_lib.retrieve import MouthLibrary
    from hygie_lib.video import CONTAINERS

    inputs = [p for p in (args.template, args.audio, args.model, args.crops, args.library) if p]
    check_output(args.out, suffixes=CONTAINERS, inputs=inputs)  # before any work: nothing is lost or wasted
    require_file(args.template, "template video", "Give the path of a video of the person idling.")
    require_file(args.audio, "audio file", "Give the path of the speech to lip-sync.")
    check_template_video(args.template)
    library_path, library = Path(args.library or "models/library.npz"), None
    if args.mouth != "generate":
        fix = "Give the library of the model's recording, e.g. --library models/library.npz (`dvc repro`)."
        library = MouthLibrary.load(require_file(library_path, "mouth library", fix))
    if library is not None and Path(args.model).resolve() == library_path.resolve():
        model = MouthModel.from_library(library)  # the fast path: the library is read once, not twice
    else:
        model = MouthModel(args.model, args.backend)
    mel = audio_features(args.audio, model.data)
    if args.crops:
        template = Crops.load(
            require_file(args.crops, "prepared template crops", "Run `dvc repro`, or leave out --crops.")
        )
        if not template.made_from(args.template):
            raise HygieError(
                f"{args.crops}: was not made from {args.template} (its content differs). "
                "Run `dvc repro` to prepare it again, or leave out --crops."
            )
        print(f"{args.template}: using the prepared {args.crops}")
    else:
        print(f"{args.template}: preparing the template (landmarks and crops) with the model's params")
        template = prepare_template(args.template, model.data, min_confidence=args.min_confidence)
    t = time.perf_counter()
    render(
        model,
        template,
        args.template,
        mel,
        args.audio,
        args.out,
        blend=args.blend,
        batch=args.batch,
        mouth=args.mouth,
        library=library,
        match_level=not args.keep_level,
    )
    print(f"{args.out}: {mel.n_frames} frames in {time.perf_counter() - t:.1f} s")
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from hygie_lib.audio import write_wav
    from hygie_lib.tts import speak
    from hygie_lib.video import CONTAINERS

    check_output(args.out, suffixes=CONTAINERS, inputs=[args.template, args.model])
    y, sr = speak(args.text, engine=args.engine, voice=args.voice)
    print(f"{args.engine} ({args.voice}): {len(y) / sr:.1f} s of speech")
    with tempfile.TemporaryDirectory(prefix="hygie-say-") as folder:
        args.audio = Path(folder) / "speech.wav"
        write_wav(args.audio, y, sr)
        return cmd_render(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from hygie_lib.audio2shape import LIVE_LEAD
    from hygie_lib.inference import MouthModel
    from hygie_lib.serve import Server, load_templates

    model = MouthModel(args.model, args.backend, lead=LIVE_LEAD)
    templates = load_templates(args.template, model)
    server = Server(model, templates, blend=args.blend, max_sessions=args.max_sessions)
    print(f"templates: {', '.join(templates)}; open http://{args.host}:{args.port}/ (Ctrl+C stops)")
    web.run_app(server.app(), host=args.host, port=args.port, print=None)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from hygie_lib.audio import load_audio
    from hygie_lib.syncnet import SyncExpert, judge_video

    expert = SyncExpert.load(require_file(args.model, "sync expert", "Train one with `dvc repro train_sync`."))
    require_file(args.video, "video", "Give the path of a video of the speaker.")
    audio = args.audio or args.video
    mel = expert.mel(load_audio(require_file(audio, "audio file", "Give the speech with --audio."), expert.hears["sr"]))
    verdict = judge_video(expert, args.video, mel.mel, expert.hears["fps"])
    lag, ms = verdict["offset"], verdict["offset"] * 1000 / expert.hears["fps"]
    when = "on time" if lag == 0 else f"{abs(lag)} frames ({abs(ms):.0f} ms) {'late' if lag > 0 else 'early'}"
    print(
        f"{args.video}: the audio comes {when}; sync confidence {verdict['confidence']:.3f} "
        f"(distance {verdict['distance']:.3f}; the expert's held-out recording scores in metrics/sync.json)"
    )
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from hygie_lib.checkpoint import load_checkpoint
    from hygie_lib.inference import export_onnx

    check_output(args.out, suffixes=[".onnx"], inputs=[args.model])
    ckpt = load_checkpoint(args.model)
    onnx = export_onnx(ckpt.model, ckpt.data, ckpt.shapes)
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(onnx)
    print(f"{args.out}: ONNX model ({len(onnx) / 1e6:.1f} MB); use it with `hygie render --model {args.out}`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `hygie` and its subcommands."""
    from hygie_lib.blend import BLENDS
    from hygie_lib.inference import BACKENDS
    from hygie_lib.tts import ENGINES

    ap = argparse.ArgumentParser(prog="hygie", description="HygieSync: person-specific lip-sync.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="check the installation: imports, device, FaceMesh, audio/video I/O, blending")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("probe", help="image of a video's first frames with lip landmarks, hull, mouth box and mask")
    p.add_argument("video")
    p.add_argument("--out", default="probe.png", help="output image, .png or .jpg (default: probe.png)")
    p.add_argument("--frames", type=positive(int), default=4, help="how many first frames (default: 4)")
    p.add_argument(
        "--fps", type=positive(float), default=25.0, help="frame rate to read at (default: 25, as video.fps)"
    )
    p.add_argument("--pad", type=float, default=1.3, help="mouth box padding (default: 1.3, as build_crops.MOUTH_PAD)")
    p.add_argument("--alpha", type=float, default=0.7, help="box smoothing (default: 0.7, as build_crops.EMA_ALPHA)")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("demo-data", help="write the synthetic demo speaker into data/raw/")
    p.add_argument("--out", default="data/raw", help="folder (default: data/raw)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=positive(float), default=120.0, help="length of the training video (default: 120)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("render", help="re-voice a template video with new audio -> MP4 (H.264 + AAC)")
    p.add_argument("--audio", required=True, help="the new speech: any audio or video file")
    add_render_options(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("say", help="make the person say a text (offline text to speech) -> MP4 (H.264 + AAC)")
    p.add_argument("text", help="what to say (quote it)")
    p.add_argument("--voice", default="en-us", help="the engine's voice (default: en-us)")
    p.add_argument("--engine", choices=list(ENGINES), default="espeak", help="text to speech (default: espeak)")
    add_render_options(p)
    p.set_defaults(func=cmd_say)

    p = sub.add_parser("serve", help="live: a web page where a template speaks what you say, type or upload")
    p.add_argument("--model", required=True, help="checkpoint (models/best.pt) or ONNX export")
    p.add_argument("--template", required=True, action="append", help="video of the person idling (repeat for more)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=positive(int), default=8000, help="port (default: 8000)")
    p.add_argument("--blend", choices=list(BLENDS), default="feather", help="paste-back (default: feather, faster)")
    p.add_argument("--backend", choices=list(BACKENDS), default="onnx", help="model runtime (default: onnx)")
    p.add_argument("--max-sessions", type=positive(int), default=8, help="sessions at once (default: 8)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("sync", help="judge a video's lip sync with the sync expert: the audio's lag and a confidence")
    p.add_argument("video", help="a video of the speaker (a render, a recording)")
    p.add_argument("--audio", help="the speech to judge it against (default: the video's own sound)")
    p.add_argument("--model", default="models/sync.pt", help="the sync expert (default: models/sync.pt)")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("export-onnx", help="export a checkpoint to ONNX, for ONNX Runtime or other runtimes")
    p.add_argument("--model", default="models/best.pt", help="checkpoint (default: models/best.pt)")
    p.add_argument("--out", default="models/best.onnx", help="output .onnx (default: models/best.onnx)")
    p.set_defaults(func=cmd_export_onnx)
    return ap


def add_render_options(p: argparse.ArgumentParser) -> None:
    """The options `render` and `say` share: model, template, output and how the mouth is made and pasted."""
    from hygie_lib.blend import BLENDS
    from hygie_lib.inference import BACKENDS
    from hygie_lib.render import MOUTHS

    p.add_argument("--model", required=True, help="checkpoint (models/best.pt) or ONNX export")
    p.add_argument("--template", required=True, help="video of the same person idling")
    p.add_argument("--out", required=True, help="output video: .mp4, .mov or .mkv (H.264 + AAC)")
    p.add_argument(
        "--crops",
        help="the template's prepared crops, e.g. data/prepared/template/crops.npz "
        "(default: prepare them now, with the model's crop settings)",
    )
    p.add_argument(
        "--mouth",
        choices=list(MOUTHS),
        default="generate",
        help="draw the mouth (generate), paste a real one of the recording (retrieve), or draw it with a real one's "
        "detail (blend: sharper, the pipeline's default; needs --library) (default: generate)",
    )
    p.add_argument("--library", help="real mouths for --mouth retrieve/blend (default: models/library.npz)")
    p.add_argument("--blend", choices=list(BLENDS), default="poisson", help="paste-back (default: poisson)")
    p.add_argument("--backend", choices=list(BACKENDS), default="onnx", help="model runtime (default: onnx)")
    p.add_argument("--batch", type=positive(int), default=32, help="frames per model call (default: 32)")
    p.add_argument("--min-confidence", type=float, default=0.5, help="FaceMesh confidence, if preparing (default: 0.5)")
    p.add_argument(
        "--keep-level",
        action="store_true",
        help="hear the audio at its own level, not moved to the training recording's (default: moved)",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hygie` console command."""
    args = build_parser().parse_args(argv)
    one_line_warnings()
    try:
        return args.func(args)
    except HygieError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
