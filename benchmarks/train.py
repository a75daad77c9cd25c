"""Training samples/s and forward ms/frame of the default HygieUNetLite on this machine's CPU (or --device).

A sample is one 2-frame clip (CLIP), as in training. Random data: speed does not depend on content.
"batching" is the CPU-side assembly of batches alone (indexing, masking, references, augmentation): on a GPU,
training cannot go faster than that, so it bounds the expected GPU time.
Usage: python benchmarks/train.py [--sizes 96 128] [--steps 8] [--device cpu]
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

from hygie_lib.crops import mouth_mask  # noqa: E402
from hygie_lib.dataset import MouthBatches  # noqa: E402
from hygie_lib.model import HygieUNetLite, count_params, flops_per_frame  # noqa: E402
from hygie_lib.split import CLIP  # noqa: E402
from hygie_lib.train import TrainConfig, train_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    ap.add_argument("--steps", type=int, default=8, help="timed optimiser steps per size (after 2 warm-up steps)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    t, m = p["train"], p["compute_mel"]
    device = torch.device(args.device)
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = TrainConfig(
        mel_win=t["MEL_WIN"],
        epochs=1,
        batch_size=t["batch_size"],
        lr=t["lr"],
        w_in=t["w_in"],
        w_temporal=t["w_temporal"],
        w_ssim=t["w_ssim"],
        w_sync=t["w_sync"],
        augment=t["augment"],
        train_split=t["TRAIN_SPLIT"],
        seed=0,
    )
    print(
        f"device {device}, {torch.get_num_threads()} threads, batch {cfg.batch_size} clips x {CLIP} frames, "
        f"widths {t['widths']}, reference {t['reference']}"
    )
    print(
        f"\n{'IMG_SIZE':>8}{'params':>11}{'GFLOPs/frame':>14}{'train samples/s':>17}{'forward ms/frame':>18}"
        f"{'batching samples/s':>20}"
    )
    for size in args.sizes:
        rng = np.random.default_rng(0)
        n = 400
        crops = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        mel = rng.normal(-4, 2, (m["N_MELS"], n * m["MEL_PER_FRAME"])).astype(np.float32)
        data = MouthBatches(
            crops, mel, per_frame=m["MEL_PER_FRAME"], mel_win=cfg.mel_win, ref_pool=np.arange(n), ref_gap=8
        )
        model = HygieUNetLite(
            mask=mouth_mask(size, p["build_crops"]["MOUTH_PAD"]),
            widths=tuple(t["widths"]),
            emb=t["emb"],
            n_mels=m["N_MELS"],
            mel_win=cfg.mel_win,
            reference=t["reference"],
        ).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)

        for i in range(2 + args.steps):  # 2 warm-up steps, then timed ones
            if i == 2:
                _sync(device)
                t0 = time.perf_counter()
            starts = rng.integers(0, n - CLIP, cfg.batch_size)
            train_step(model, data.batch(starts, rng, augment=cfg.augment), opt, cfg, device)
        _sync(device)
        train_sps = args.steps * cfg.batch_size / (time.perf_counter() - t0)

        model.eval()
        bs = 32
        masked = torch.rand(bs, 3, size, size, device=device)
        mels = torch.randn(bs, 1, m["N_MELS"], cfg.mel_win, device=device)
        ref = masked if model.reference else None
        with torch.inference_mode():
            model(masked, mels, ref)
            _sync(device)
            t0 = time.perf_counter()
            reps = 5
            for _ in range(reps):
                model(masked, mels, ref)
            _sync(device)
        fwd_ms = (time.perf_counter() - t0) / (reps * bs) * 1e3
        t0 = time.perf_counter()  # CPU-side batch assembly alone: the ceiling of a GPU run that does the rest
        for _ in range(args.steps):
            data.batch(rng.integers(0, n - CLIP, cfg.batch_size), rng, augment=cfg.augment)
        batch_sps = args.steps * cfg.batch_size / (time.perf_counter() - t0)
        print(
            f"{size:>8}{count_params(model):>11,}{flops_per_frame(model) / 1e9:>14.3f}{train_sps:>17.1f}{fwd_ms:>18.2f}"
            f"{batch_sps:>20.0f}"
        )


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
