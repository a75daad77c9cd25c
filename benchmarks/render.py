"""End-to-end render speed at 720p: the demo template upscaled to 1280x720, 30 s of audio, per-step breakdown.

The size of each rendered file is printed beside its speed (out MB), and the CPU cores the render kept busy (cores:
CPU seconds of all its threads per second of wall time).

Each configuration runs in its own process, so its peak memory (max RSS) is its own. The template is prepared
once (landmarks + crops, what the pipeline caches), as in production. Also compares the Poisson paste with OpenCV's
seamlessClone (speed, difference), and tries INT8 (dynamic) quantization of the ONNX model: speed of the model step
and how far its output moves from FP32.
A configuration is backend:blend[:mouth]; retrieve and blend mouths come from a library of the template's own crops.
Usage: python benchmarks/render.py [--model models/best.pt | --size 160 --warp] [--seconds 30]
       [--configs onnx:poisson torch:poisson onnx:poisson:retrieve ...]   (needs the demo template: `hygie demo-data`)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hygie_lib.audio import load_audio, write_wav  # noqa: E402
from hygie_lib.audio2shape import AudioToShape, ShapeModel  # noqa: E402
from hygie_lib.blend import poisson  # noqa: E402
from hygie_lib.checkpoint import DataInfo, load_checkpoint, save_checkpoint  # noqa: E402
from hygie_lib.crops import Crops, box_roi, crop, mouth_mask, uncrop  # noqa: E402
from hygie_lib.inference import MouthModel, export_onnx  # noqa: E402
from hygie_lib.model import HygieUNetLite, model_config  # noqa: E402
from hygie_lib.render import LOOP_JPEG, audio_features, prepare_template, render  # noqa: E402
from hygie_lib.retrieve import MouthLibrary, build_library  # noqa: E402
from hygie_lib.shape import ShapeSpace  # noqa: E402
from hygie_lib.video import VideoWriter, iter_frames  # noqa: E402

# seconds per step, in four threads that overlap (decode to cond: starting a batch; model; detail and blend: pasting;
# encode), so they add up to more than the wall time
STEPS = ["decode", "crops", "cond", "model", "detail", "blend", "encode"]


def make_inputs(
    work: Path, model_path: str | None, seconds: float, size: int | None, warp: bool | None
) -> dict[str, str]:
    """The 720p template, the 30 s audio, a model (the trained one, else an untrained one of params.yaml's config, at
    `size` px and with `warp` if given), the prepared crops and a mouth library of them."""
    if model_path is None:  # speed does not depend on the weights
        p = yaml.safe_load((ROOT / "params.yaml").read_text())
        c, m, t = p["build_crops"], p["compute_mel"], p["train"]
        t = {**t, "warp": t["warp"] if warp is None else warp}
        data = DataInfo(
            img_size=size or c["IMG_SIZE"],
            mouth_pad=c["MOUTH_PAD"],
            ema_alpha=c["EMA_ALPHA"],
            fps=float(p["video"]["fps"]),
            sr=p["extract_audio"]["SR"],
            n_fft=m["N_FFT"],
            n_mels=m["N_MELS"],
            mel_per_frame=m["MEL_PER_FRAME"],
            mel_win=t["MEL_WIN"],
        )
    else:
        data = MouthModel(model_path, "torch").data
    raw = ROOT / "data" / "raw"
    template = work / "template_720p.mp4"
    with VideoWriter(template, data.fps, 1280, 720) as w:
        for frame in iter_frames(raw / "template_idle.mp4", data.fps):
            side = 720
            face = cv2.resize(frame, (side, side), interpolation=cv2.INTER_CUBIC)
            w.write(cv2.copyMakeBorder(face, 0, 0, (1280 - side) // 2, (1280 - side) // 2, cv2.BORDER_REFLECT))
    speech = load_audio(raw / "new_audio.wav", 16000)
    audio = work / "speech.wav"
    write_wav(audio, np.tile(speech, int(np.ceil(seconds * 16000 / len(speech))))[: int(seconds * 16000)], 16000)
    start = time.perf_counter()
    tpl = prepare_template(template, data)
    prep = time.perf_counter() - start
    tpl.save(work / "crops.npz")
    if model_path is None:  # an untrained model of params.yaml's config, its shape model fitted on the template
        model = HygieUNetLite(
            mask=mouth_mask(data.img_size, data.mouth_pad),
            n_mels=data.n_mels,
            mel_win=data.mel_win,
            **model_config(t),
        )
        space = ShapeSpace.fit(tpl.landmarks[tpl.face], p["train_shape"]["components"])
        predictor = AudioToShape.untrained(space.k)
        model_path = str(work / "untrained.pt")
        save_checkpoint(model_path, model, data, ShapeModel(space, predictor, 0))
    model = MouthModel(model_path, "torch")
    build_library(tpl, template, model.shapes, np.flatnonzero(tpl.face), model.data, False).save(work / "lib.npz")
    print(
        f"template 1280x720, {len(tpl.crops)} frames, prepared once in {prep:.1f} s "
        f"({len(tpl.crops) / prep:.0f} frames/s); audio {seconds:.0f} s; model {model_path} ({data.img_size}px)"
    )
    return {
        "model": model_path,
        "template": str(template),
        "crops": str(work / "crops.npz"),
        "audio": str(audio),
        "library": str(work / "lib.npz"),
    }


def run_one(inputs: dict[str, str], backend: str, blend: str, mouth: str) -> dict:
    """Render once in this process: frames/s, CPU cores used, seconds per step and peak memory."""
    model = MouthModel(inputs["model"], backend)
    library = None if mouth == "generate" else MouthLibrary.load(inputs["library"])
    t = time.perf_counter()
    mel = audio_features(inputs["audio"], model.data)
    mel_s = time.perf_counter() - t
    out = Path(inputs["template"]).with_name(f"out_{backend}_{blend}_{mouth}.mp4")
    t, cpu = time.perf_counter(), _cpu_seconds()
    tpl = Crops.load(inputs["crops"])
    seconds = render(
        model,
        tpl,
        inputs["template"],
        mel,
        inputs["audio"],
        out,
        blend=blend,
        mouth=mouth,
        library=library,
        progress=False,
    )
    render_s = time.perf_counter() - t
    cores = (_cpu_seconds() - cpu) / render_s  # the render's threads together, while it ran
    wall = render_s + mel_s
    seconds["cond"] = seconds.get("cond", 0.0) + mel_s  # the mel is part of what the model hears
    return {
        "frames": mel.n_frames,
        "wall": wall,
        "cores": cores,
        "seconds": seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "out_mb": out.stat().st_size / 1e6,
    }


def _cpu_seconds() -> float:
    """CPU seconds this process has used, all its threads together."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loop_cache_report(template: str, fps: float) -> None:
    """Disk used by the replay cache of a looping template, per minute of template, at 720p and 1080p."""
    frames = [f for _, f in zip(range(25), iter_frames(template, fps))]
    for name, size in [("720p", (1280, 720)), ("1080p", (1920, 1080))]:
        jpeg = [len(cv2.imencode(".jpg", cv2.resize(f, size), LOOP_JPEG)[1]) for f in frames]
        mb_min, raw_mb_min = np.mean(jpeg) * fps * 60 / 1e6, size[0] * size[1] * 3 * fps * 60 / 1e6
        print(f"  {name}: {mb_min:.0f} MB per minute of template (raw frames would take {raw_mb_min:.0f} MB)")


def poisson_report(inputs: dict[str, str], n: int = 20) -> None:
    """Time and difference of blend.poisson against OpenCV's seamlessClone, pasting each of `n` template frames'
    mouths into the frame 13 later (moved mouth, jaw and collar: a harder seam than a render's)."""
    tpl = Crops.load(inputs["crops"])
    frames = [f for _, f in zip(range(n + 13), iter_frames(inputs["template"], tpl.fps))]
    times, diffs = {"poisson": [], "seamlessClone": []}, []
    for t in range(n):
        frame, box = frames[t + 13], tpl.boxes[t + 13]
        roi = box_roi(box, *frame.shape[:2])
        x0, y0, x1, y1 = roi
        src = uncrop(crop(frames[t], tpl.boxes[t], 2 * tpl.size), box, roi)
        hard = (uncrop(tpl.mask * 255, box, roi, cv2.INTER_LINEAR) > 127).astype(np.uint8) * 255
        hard[[0, -1], :], hard[:, [0, -1]] = 0, 0
        bx, by, bw, bh = cv2.boundingRect(hard)
        t0 = time.perf_counter()
        ours = poisson(frame, src, tpl.mask, box, roi)
        t1 = time.perf_counter()
        theirs = cv2.seamlessClone(src, frame, hard, (x0 + bx + bw // 2, y0 + by + bh // 2), cv2.NORMAL_CLONE)
        times["poisson"].append(t1 - t0)
        times["seamlessClone"].append(time.perf_counter() - t1)
        diffs.append(np.abs(ours.astype(int) - theirs)[y0:y1, x0:x1])
    d = np.concatenate([x.ravel() for x in diffs])
    print(
        f"  blend.poisson {np.median(times['poisson']) * 1e3:.1f} ms, OpenCV seamlessClone "
        f"{np.median(times['seamlessClone']) * 1e3:.1f} ms per frame ({x1 - x0} px mouth); difference in the mouth "
        f"box: mean {d.mean():.2f}, 99th percentile {np.percentile(d, 99):.0f}, max {d.max()} levels"
    )


def int8_report(inputs: dict[str, str]) -> None:
    """Model-step speed and output change of an INT8 (dynamic) quantized ONNX model against FP32."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ckpt = load_checkpoint(inputs["model"])
    model, d = ckpt.model, ckpt.data
    work = Path(inputs["template"]).parent
    (work / "fp32.onnx").write_bytes(export_onnx(model, d, ckpt.shapes))
    quantize_dynamic(str(work / "fp32.onnx"), str(work / "int8.onnx"), weight_type=QuantType.QInt8)
    tpl = Crops.load(inputs["crops"])
    b = 32
    crops = tpl.crops[:b].transpose(0, 3, 1, 2).astype(np.float32) / 255
    mouths = MouthModel(inputs["model"], "torch")
    heard = mouths.hear(audio_features(inputs["audio"], d))[np.arange(b) * 10]
    cond = mouths.conditions(heard, tpl.landmarks[:b], tpl.boxes[:b]).astype(np.float32)
    feeds = {"crop": crops, "cond": cond, **({"ref": crops[::-1].copy()} if model.reference else {})}
    outs = {}
    for name in ("fp32", "int8"):
        s = ort.InferenceSession(str(work / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        s.run(None, feeds)
        t = time.perf_counter()
        for _ in range(5):
            outs[name] = s.run(None, feeds)[0]
        print(f"  {name}: model {(time.perf_counter() - t) / (5 * b) * 1e3:.2f} ms/frame")
    mse = float(np.mean((outs["int8"] - outs["fp32"]) ** 2 * tpl.mask[None, None])) / float(tpl.mask.mean())
    print(
        f"  int8 vs fp32 inside the mouth mask: PSNR {10 * np.log10(1 / max(mse, 1e-12)):.1f} dB, "
        f"max abs difference {np.abs(outs['int8'] - outs['fp32']).max() * 255:.1f} levels"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", help="checkpoint (default: an untrained model of params.yaml's config: speed is the same)"
    )
    ap.add_argument("--size", type=int, help="IMG_SIZE of the untrained model (default: params.yaml's)")
    ap.add_argument("--warp", action=argparse.BooleanOptionalAction, help="train.warp of the untrained model")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["onnx:poisson", "onnx:feather", "torch:poisson", "onnx:poisson:retrieve"],
        help="backend:blend[:mouth]",
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one config on prepared inputs (JSON)
    args = ap.parse_args()
    if args.one:
        inputs, backend, blend, mouth = json.loads(args.one)
        print(json.dumps(run_one(inputs, backend, blend, mouth)))
        return
    if not (ROOT / "data" / "raw" / "template_idle.mp4").is_file():
        sys.exit("data/raw/template_idle.mp4: not found. Run `hygie demo-data` first.")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp), args.model, args.seconds, args.size, args.warp)
        print(
            f"\n{'backend:blend:mouth':<24}{'frames/s':>9}{'cores':>6}"
            + "".join(f"{s:>8}" for s in STEPS)
            + f"{'peak MB':>9}{'out MB':>8}   (steps in ms/frame; out: the rendered file)"
        )
        for config in args.configs:
            backend, blend, mouth = (config + ":generate").split(":")[:3]
            r = subprocess.run(
                [sys.executable, __file__, "--one", json.dumps([inputs, backend, blend, mouth])],
                capture_output=True,
                text=True,
                check=True,
            )
            res = json.loads(r.stdout.strip().splitlines()[-1])
            n = res["frames"]
            steps = "".join(f"{res['seconds'].get(s, 0) / n * 1e3:>8.1f}" for s in STEPS)
            speed = f"{n / res['wall']:>9.1f}{res['cores']:>6.2f}"
            print(f"{config:<24}{speed}{steps}{res['peak_mb']:>9.0f}{res['out_mb']:>8.1f}")
        print("\nReplay cache of a looping template (JPEG, render.LOOP_JPEG), in $TMPDIR during a render:")
        loop_cache_report(inputs["template"], 25.0)
        print("\nPoisson pasting, this project's solve against OpenCV's:")
        poisson_report(inputs)
        print("\nINT8 dynamic quantization of the ONNX model (32-frame batch):")
        int8_report(inputs)


if __name__ == "__main__":
    main()
