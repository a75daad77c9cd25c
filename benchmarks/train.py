"""Training samples/s and forward ms/frame of params.yaml's HygieUNetLite on this machine's CPU (or --device).

A sample is one clip of CLIP frames (5 with the sync loss), as in training. Random pixels and mel (speed does not
depend on content), the demo face's real landmarks (a shape-conditioned model draws them). "batching" is the
CPU-side assembly of batches alone (indexing, drawing shapes, references, augmentation): on a GPU, training
cannot go faster than that, so it bounds the expected GPU time.
Usage: python benchmarks/train.py [--sizes 96 128] [--steps 8] [--device cpu] [--cond shape|audio] [--w-sync 0.3]
       [--w-gan 0.1] [--warp | --no-warp] [--precision auto|bf16|fp32] [--compile]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hygie_lib.audio import Mel  # noqa: E402
from hygie_lib.audio2shape import AudioToShape, ShapeModel  # noqa: E402
from hygie_lib.crops import Crops, mouth_boxes, mouth_mask  # noqa: E402
from hygie_lib.dataset import MouthBatches  # noqa: E402
from hygie_lib.device import PRECISIONS, autocast_dtype  # noqa: E402
from hygie_lib.landmarks import FaceMesh  # noqa: E402
from hygie_lib.model import HygieUNetLite, count_params, flops_per_frame, model_config  # noqa: E402
from hygie_lib.shape import ShapeSpace  # noqa: E402
from hygie_lib.split import CLIP  # noqa: E402
from hygie_lib.syncnet import SYNC_FRAMES, SyncExpert, SyncNet  # noqa: E402
from hygie_lib.synth import base_face  # noqa: E402
from hygie_lib.train import Adversary, Critics, TrainConfig, train_step  # noqa: E402


def talking_face(n: int, size: int, pad: float, n_mels: int, rng: np.random.Generator) -> tuple[Crops, Mel, ShapeModel]:
    """Random crops and mel around the demo face's landmarks, the jaw moving, and a shape model of them."""
    with FaceMesh(static=True) as mesh:
        face = mesh(base_face())
    landmarks = np.repeat(face[None], n, axis=0)
    landmarks[:, :, 1] += rng.normal(0, 2, (n, 1))
    crops = Crops(
        rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        mouth_boxes(landmarks, pad),
        np.ones(n, bool),
        landmarks,
        mouth_mask(size, pad),
        pad,
        0.7,
        25.0,
        "",
    )
    mel = Mel(rng.normal(-4, 2, (n_mels, n * 4)).astype(np.float32), 16000, 512, 25.0, 4)
    space = ShapeSpace.fit(landmarks + rng.normal(0, 1, landmarks.shape), 8)
    predictor = AudioToShape.untrained(space.k)
    return crops, mel, ShapeModel(space, predictor, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    ap.add_argument("--steps", type=int, default=8, help="timed optimiser steps per size (after 2 warm-up steps)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cond", choices=["shape", "audio"], help="the generator's condition (default: params.yaml's)")
    ap.add_argument("--w-sync", type=float, help="sync loss weight (default: params.yaml's)")
    ap.add_argument("--w-gan", type=float, help="adversarial loss weight (default: params.yaml's)")
    ap.add_argument("--warp", action=argparse.BooleanOptionalAction, help="train.warp (default: params.yaml's)")
    ap.add_argument("--precision", choices=PRECISIONS, help="training precision (default: params.yaml's)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (compiled in the warm-up steps)")
    args = ap.parse_args()
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    t, m = p["train"], p["compute_mel"]
    cond = args.cond or t["cond"]
    w_sync = t["w_sync"] if args.w_sync is None else args.w_sync
    w_gan = t["w_gan"] if args.w_gan is None else args.w_gan
    t = {**t, "warp": t["warp"] if args.warp is None else args.warp}
    device = torch.device(args.device)
    torch.set_num_threads(os.cpu_count() or 1)
    one_step = {"steps": 1, "eval_every": 1, "patience": 0, "gan_warmup": 0, "seed": 0}
    cfg = TrainConfig.of(
        {**t, **one_step, "w_sync": w_sync, "w_gan": w_gan, "precision": args.precision or t["precision"]}
    )
    clip = SYNC_FRAMES if w_sync else CLIP
    hears = {"sr": 16000, "n_fft": 512, "n_mels": m["N_MELS"], "per_frame": 4, "fps": 25.0}
    expert = SyncExpert(SyncNet().requires_grad_(False), hears, p["build_crops"]["MOUTH_PAD"]) if w_sync else None
    critics = Critics(expert, Adversary(cfg.lr, device) if w_gan else None, adversarial=bool(w_gan))
    print(
        f"device {device}, {torch.get_num_threads()} threads, "
        f"{autocast_dtype(device, cfg.precision) or torch.float32}, "
        f"cond {cond}, w_sync {w_sync}, w_gan {w_gan}, batch "
        f"{cfg.batch_size} clips x {clip} frames, widths {t['widths']}, reference {t['reference']}, warp {t['warp']}"
    )
    print(
        f"\n{'IMG_SIZE':>8}{'params':>11}{'GFLOPs/frame':>14}{'train samples/s':>17}{'forward ms/frame':>18}"
        f"{'batching samples/s':>20}"
    )
    for size in args.sizes:
        rng = np.random.default_rng(0)
        n = 400
        crops, mel, shapes = talking_face(n, size, p["build_crops"]["MOUTH_PAD"], m["N_MELS"], rng)
        data = MouthBatches(
            crops, mel, shapes, cond=cond, mel_win=cfg.mel_win, ref_pool=np.arange(n), ref_gap=8, clip=clip
        )
        model = HygieUNetLite(
            mask=crops.mask,
            n_mels=m["N_MELS"],
            mel_win=cfg.mel_win,
            **model_config({**t, "cond": cond}),
        ).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        trained = torch.compile(model) if args.compile else model
        for i in range(2 + args.steps):  # 2 warm-up steps, then timed ones
            if i == 2:
                _sync(device)
                t0 = time.perf_counter()
            starts = rng.integers(0, n - clip, cfg.batch_size)
            train_step(trained, data.batch(starts, rng, augment=cfg.augment), opt, cfg, device, critics)
        _sync(device)
        train_sps = args.steps * cfg.batch_size / (time.perf_counter() - t0)

        model.eval()
        bs = 32
        crop = torch.rand(bs, 3, size, size, device=device)
        cond_in = torch.rand(model.cond_shape(bs), device=device)
        ref = crop if model.reference else None
        with torch.inference_mode():
            model(crop, cond_in, ref)
            _sync(device)
            t0 = time.perf_counter()
            reps = 5
            for _ in range(reps):
                model(crop, cond_in, ref)
            _sync(device)
        fwd_ms = (time.perf_counter() - t0) / (reps * bs) * 1e3
        t0 = time.perf_counter()  # CPU-side batch assembly alone: the ceiling of a GPU run that does the rest
        for _ in range(args.steps):
            data.batch(rng.integers(0, n - clip, cfg.batch_size), rng, augment=cfg.augment)
        batch_sps = args.steps * cfg.batch_size / (time.perf_counter() - t0)
        print(
            f"{size:>8}{count_params(model):>11,}{flops_per_frame(model) / 1e9:>14.3f}{train_sps:>17.1f}"
            f"{fwd_ms:>18.2f}{batch_sps:>20.0f}"
        )


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
