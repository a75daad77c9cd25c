"""End-to-end render speed at 720p: the demo template upscaled to 1280x720, 30 s of audio, per-step breakdown.

Each configuration runs in its own process, so its peak memory (max RSS) is its own. The template is prepared
once (landmarks + crops, what the pipeline caches), as in production. Also tries INT8 (dynamic) quantization of
the ONNX model: speed of the model step and how far its output moves from FP32.
Usage: python benchmarks/render.py [--model models/best.pt] [--seconds 30] [--configs onnx:poisson torch:poisson ...]
(needs the demo template: `hygie demo-data`)
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hygie_lib.audio import load_audio, write_wav  # noqa: E402
from hygie_lib.dataset import mel_windows  # noqa: E402
from hygie_lib.io import save_npz  # noqa: E402
from hygie_lib.model import HygieUNetLite, config_dict  # noqa: E402
from hygie_lib.render import Template, audio_features, model_inputs, prepare_template, render  # noqa: E402
from hygie_lib.runtime import MouthModel, export_onnx  # noqa: E402
from hygie_lib.train import DataInfo, load_checkpoint  # noqa: E402
from hygie_lib.video import VideoWriter, iter_frames  # noqa: E402

STEPS = ["decode", "crops", "mel", "model", "blend", "encode"]  # encode runs in its own thread, overlapping


def make_inputs(work: Path, model_path: str | None, seconds: float) -> dict[str, str]:
    """The 720p template, the 30 s audio, a model (the trained one, else an untrained default) and the prepared crops."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    if model_path is None:  # speed does not depend on the weights
        model = HygieUNetLite(img_size=p["build_crops"]["IMG_SIZE"], widths=tuple(p["train"]["widths"]), emb=p["train"]["emb"],
                              n_mels=p["compute_mel"]["N_MELS"], mel_win=p["compute_mel"]["MEL_WIN"], reference=p["train"]["reference"])
        data = asdict(DataInfo(img_size=model.img_size, mouth_pad=p["build_crops"]["MOUTH_PAD"], fps=float(p["video"]["fps"]),
                               sr=p["extract_audio"]["SR"], n_fft=p["compute_mel"]["N_FFT"], n_mels=model.n_mels,
                               mel_per_frame=p["compute_mel"]["MEL_PER_FRAME"], mel_win=model.mel_win))
        model_path = str(work / "untrained.pt")
        torch.save({"config": config_dict(model), "state_dict": model.state_dict(), "data": data}, model_path)
    data = MouthModel(model_path, "torch").data
    raw = ROOT / "data" / "raw"
    template = work / "template_720p.mp4"
    with VideoWriter(template, data["fps"], 1280, 720) as w:
        for frame in iter_frames(raw / "template_idle.mp4", data["fps"]):
            side = 720
            face = cv2.resize(frame, (side, side), interpolation=cv2.INTER_CUBIC)
            w.write(cv2.copyMakeBorder(face, 0, 0, (1280 - side) // 2, (1280 - side) // 2, cv2.BORDER_REFLECT))
    speech = load_audio(raw / "new_audio.wav", 16000)
    audio = work / "speech.wav"
    write_wav(audio, np.tile(speech, int(np.ceil(seconds * 16000 / len(speech))))[: int(seconds * 16000)], 16000)
    t = time.perf_counter()
    tpl = prepare_template(template, fps=data["fps"], size=data["img_size"], pad=data["mouth_pad"], alpha=0.7, min_confidence=0.5)
    prep = time.perf_counter() - t
    save_npz(work / "crops.npz", crops=tpl.crops, boxes=tpl.boxes, face=tpl.face, mask=tpl.mask, pad=np.float32(tpl.pad))
    print(f"template 1280x720, {len(tpl.crops)} frames, prepared once in {prep:.1f} s "
          f"({len(tpl.crops) / prep:.0f} frames/s); audio {seconds:.0f} s; model {model_path} ({data['img_size']}px)")
    return {"model": model_path, "template": str(template), "crops": str(work / "crops.npz"), "audio": str(audio)}


def run_one(inputs: dict[str, str], backend: str, blend: str) -> dict:
    """Render once in this process: frames/s, seconds per step and peak memory."""
    model = MouthModel(inputs["model"], backend)
    t = time.perf_counter()
    mel, audio = audio_features(inputs["audio"], model.data)
    mel_s = time.perf_counter() - t
    out = Path(inputs["template"]).with_name(f"out_{backend}_{blend}.mp4")
    t = time.perf_counter()
    seconds = render(model, Template.load(inputs["crops"]), inputs["template"], mel, audio, out,
                     fps=model.data["fps"], blend=blend, progress=False)
    wall = time.perf_counter() - t + mel_s
    seconds["mel"] = seconds.get("mel", 0.0) + mel_s
    n = mel.shape[1] // model.data["mel_per_frame"]
    return {"frames": n, "wall": wall, "seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def int8_report(inputs: dict[str, str]) -> None:
    """Model-step speed and output change of an INT8 (dynamic) quantized ONNX model against FP32."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, ckpt = load_checkpoint(inputs["model"])
    work = Path(inputs["template"]).parent
    (work / "fp32.onnx").write_bytes(export_onnx(model, {"config": ckpt["config"], "data": ckpt["data"]}))
    quantize_dynamic(str(work / "fp32.onnx"), str(work / "int8.onnx"), weight_type=QuantType.QInt8)
    tpl = Template.load(inputs["crops"])
    b, d = 32, ckpt["data"]
    masked, ref = model_inputs(tpl.crops[:b], tpl.crops[b - 1 :: -1] if model.reference else None, tpl.mask)
    mel, _ = audio_features(inputs["audio"], d)
    windows = mel_windows(mel, np.arange(b) * 10, per_frame=d["mel_per_frame"], win=d["mel_win"])[:, None].astype(np.float32)
    feeds = {k: v for k, v in {"masked": masked, "mel": windows, "ref": ref}.items() if v is not None}
    outs = {}
    for name in ("fp32", "int8"):
        s = ort.InferenceSession(str(work / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        s.run(None, feeds)
        t = time.perf_counter()
        for _ in range(5):
            outs[name] = s.run(None, feeds)[0]
        print(f"  {name}: model {(time.perf_counter() - t) / (5 * b) * 1e3:.2f} ms/frame")
    mse = float(np.mean((outs["int8"] - outs["fp32"]) ** 2 * tpl.mask[None, None])) / float(tpl.mask.mean())
    print(f"  int8 vs fp32 inside the mouth mask: PSNR {10 * np.log10(1 / max(mse, 1e-12)):.1f} dB, "
          f"max abs difference {np.abs(outs['int8'] - outs['fp32']).max() * 255:.1f} levels")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint (default: an untrained model of params.yaml's config: speed is the same)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--configs", nargs="+", default=["onnx:poisson", "onnx:feather", "torch:poisson"], help="backend:blend")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one config on prepared inputs (JSON)
    args = ap.parse_args()
    if args.one:
        inputs, backend, blend = json.loads(args.one)
        print(json.dumps(run_one(inputs, backend, blend)))
        return
    if not (ROOT / "data" / "raw" / "template_idle.mp4").is_file():
        sys.exit("data/raw/template_idle.mp4: not found. Run `hygie demo-data` first.")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp), args.model, args.seconds)
        print(f"\n{'backend:blend':<16}{'frames/s':>9}" + "".join(f"{s:>8}" for s in STEPS) + f"{'peak MB':>9}   (steps in ms/frame)")
        for config in args.configs:
            backend, blend = config.split(":")
            r = subprocess.run([sys.executable, __file__, "--one", json.dumps([inputs, backend, blend])],
                               capture_output=True, text=True, check=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            n = res["frames"]
            steps = "".join(f"{res['seconds'].get(s, 0) / n * 1e3:>8.1f}" for s in STEPS)
            print(f"{config:<16}{n / res['wall']:>9.1f}{steps}{res['peak_mb']:>9.0f}")
        print("\nINT8 dynamic quantization of the ONNX model (32-frame batch):")
        int8_report(inputs)


if __name__ == "__main__":
    main()
