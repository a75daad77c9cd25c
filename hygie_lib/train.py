"""Training: losses, one epoch, validation, the best checkpoint, a resumable run state, and dvclive logging."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hygie_lib.audio import Mel
from hygie_lib.audio2shape import ShapeModel
from hygie_lib.checkpoint import DataInfo, build_model, save_checkpoint, save_state
from hygie_lib.crops import Crops
from hygie_lib.dataset import MouthBatches
from hygie_lib.device import best_device
from hygie_lib.io import HygieError, fingerprint
from hygie_lib.metrics import psnr, ssim
from hygie_lib.model import HygieUNetLite, PatchDiscriminator, count_params
from hygie_lib.split import CLIP, heldout_gap, reference_gap, time_split
from hygie_lib.syncnet import SYNC_FRAMES, SyncExpert, sync_loss


@dataclass(frozen=True)
class TrainConfig:
    """Everything the loop needs besides the data; each field is a `train.*` param."""

    mel_win: int  # MEL_WIN: mel columns the model hears per frame, centred on it
    epochs: int
    batch_size: int
    lr: float
    w_in: float  # L1 weight inside the mouth mask (1 outside)
    w_temporal: float  # weight of the temporal L1 on consecutive frames
    w_ssim: float  # weight of the (1 - SSIM) term inside the mask (0 = off)
    w_sync: float  # weight of the frozen sync expert's verdict on 5-frame clips (0 = off; Wav2Lip's sync loss)
    w_gan: float  # weight of the PatchGAN adversary's verdict on the mouth region (0 = off)
    gan_warmup: int  # epochs of reconstruction alone before the adversary joins
    augment: bool
    train_split: float
    seed: int


def weighted_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, w_in: float) -> torch.Tensor:
    """L1 with weight `w_in` inside the mouth mask and 1 outside."""
    return ((1.0 + (w_in - 1.0) * mask) * (pred - target).abs()).mean()


def temporal_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and real frame-to-frame changes inside the mask, for clips [B, T, 3, S, S]."""
    return ((pred.diff(dim=1) - target.diff(dim=1)).abs() * mask).mean()


def _run(model: HygieUNetLite, b: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Predicted clips [B, T, 3, S, S] for a batch."""
    B, T = b["target"].shape[:2]
    ref = b["ref"].to(device)[:, None].expand(-1, T, -1, -1, -1).flatten(0, 1) if model.reference else None
    out = model(b["target"].to(device).flatten(0, 1), b["cond"].to(device).flatten(0, 1), ref)
    return out.view(B, T, *out.shape[1:])


class Adversary:
    """A PatchGAN critic of the mouth region and its optimizer (hinge loss), trained beside the generator."""

    def __init__(self, lr: float, device: torch.device) -> None:
        self.d = PatchDiscriminator().to(device)
        self.opt = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.5, 0.999))
        self.losses: list[float] = []

    def _score(self, masked: torch.Tensor, crop: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-image realism [N] of crops [N, 3, S, S], averaged over the patches that lie in the mouth mask."""
        scores = self.d(masked, crop)  # [N, 1, S/8, S/8]
        weight = (F.adaptive_avg_pool2d(mask[None, None], scores.shape[-2:]) > 0.5).float()
        return (scores * weight).sum((1, 2, 3)) / weight.sum()

    def generator_loss(self, masked: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The generator is rewarded when its mouths score as real."""
        return -self._score(masked, fake, mask).mean()

    def step(self, masked: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor) -> None:
        """One critic update: real mouths score above +1, generated ones below -1 (hinge)."""
        loss = F.relu(1 - self._score(masked, real, mask)).mean() + F.relu(1 + self._score(masked, fake, mask)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.losses.append(loss.item())


@dataclass
class Critics:
    """What judges generated clips besides the real frames: the frozen sync expert and, after its warm-up, the
    adversary."""

    expert: SyncExpert | None = None
    adversary: Adversary | None = None
    adversarial: bool = False  # the adversary's term is on (after train.gan_warmup epochs)


def clip_loss(
    model: HygieUNetLite,
    b: dict[str, torch.Tensor],
    cfg: TrainConfig,
    device: torch.device,
    critics: Critics,
):
    """(total loss, predicted clips) of a batch: reconstruction, and the critics' verdicts where they are on."""
    pred = _run(model, b, device)
    target, mask = b["target"].to(device), model.mask
    loss = weighted_l1(pred, target, mask, cfg.w_in)
    if cfg.w_temporal:
        loss = loss + cfg.w_temporal * temporal_l1(pred, target, mask)
    if cfg.w_ssim:
        loss = loss + cfg.w_ssim * (1.0 - ssim(pred, target, mask))
    if cfg.w_sync:
        loss = loss + cfg.w_sync * sync_loss(critics.expert, pred.float(), mask.cpu().numpy(), b["sync_mel"].to(device))
    if cfg.w_gan and critics.adversarial:
        masked = (target * (1.0 - mask)).flatten(0, 1)
        loss = loss + cfg.w_gan * critics.adversary.generator_loss(masked, pred.flatten(0, 1), mask)
    return loss, pred


def cosine_schedule(opt: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate from `lr` down to 2% of it along a half cosine over `total_steps` optimiser steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.02 + 0.49 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))
    )


def train_step(
    model: HygieUNetLite,
    b: dict[str, torch.Tensor],
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    device,
    critics: Critics | None = None,
) -> float:
    """One optimiser step on a batch (bf16 autocast on CUDA), then one of the adversary if it is on; the loss."""
    critics = critics or Critics()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss, pred = clip_loss(model, b, cfg, device, critics)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if cfg.w_gan and critics.adversarial:
        target, mask = b["target"].to(device).flatten(0, 1), model.mask
        critics.adversary.step(target * (1.0 - mask), target, pred.detach().float().flatten(0, 1), mask)
    return loss.item()


def train_one_epoch(
    model, data: MouthBatches, starts, opt, sched, cfg: TrainConfig, rng, device, desc: str, critics: Critics
) -> tuple[float, float]:
    """One pass over the training clips in random order: (mean loss, samples/s)."""
    model.train()
    order = rng.permutation(starts)
    total, seen, t0 = 0.0, 0, time.perf_counter()
    bar = tqdm(range(0, len(order) - cfg.batch_size + 1, cfg.batch_size), desc=desc, unit="batch", leave=False)
    for i in bar:
        b = data.batch(order[i : i + cfg.batch_size], rng, augment=cfg.augment)
        loss = train_step(model, b, opt, cfg, device, critics)
        sched.step()
        total += loss * cfg.batch_size
        seen += cfg.batch_size
        bar.set_postfix(loss=f"{total / seen:.4f}", samples_s=f"{seen / (time.perf_counter() - t0):.1f}")
    return total / max(seen, 1), seen / (time.perf_counter() - t0)


@torch.no_grad()
def validate(model, data: MouthBatches, starts, cfg: TrainConfig, device, critics: Critics) -> tuple[dict, dict]:
    """Validation loss (without the adversary's term: a moving target), mouth PSNR and SSIM over all validation clips
    (fixed references), and one batch to preview."""
    model.eval()
    rng = np.random.default_rng(1234)  # the same references every epoch
    sums, n, first = {"loss": 0.0, "psnr_mouth": 0.0, "ssim_mouth": 0.0}, 0, None
    for i in range(0, len(starts), cfg.batch_size):
        b = data.batch(starts[i : i + cfg.batch_size], rng, augment=False)
        loss, pred = clip_loss(model, b, cfg, device, replace(critics, adversarial=False))
        pred, k, mask = pred.float().cpu(), len(starts[i : i + cfg.batch_size]), model.mask.cpu()
        sums["loss"] += float(loss) * k
        sums["psnr_mouth"] += psnr(pred, b["target"], mask) * k
        sums["ssim_mouth"] += float(ssim(pred, b["target"], mask)) * k
        n += k
        first = first or {"masked": b["target"] * (1.0 - mask), "pred": pred, "target": b["target"]}
    return {name: value / max(n, 1) for name, value in sums.items()}, first


def preview(b: dict, k: int = 6) -> np.ndarray:
    """Image grid (uint8 RGB): rows masked | predicted | real for the first k samples' first frame."""
    rows = [b[name][:k, 0] for name in ("masked", "pred", "target")]  # [k, 3, S, S] each
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # [3, 3S, kS]
    return (grid.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def run_settings(cfg: TrainConfig, model_kwargs: dict, data: DataInfo, source: str) -> dict:
    """Everything that makes a training run what it is, as plain data: a resume must match it (epochs may differ)."""
    train = {k: v for k, v in asdict(cfg).items() if k != "epochs"}
    return {
        **train,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs.items()},
        **asdict(data),
        "video": source,
    }


def resume_path(models_dir: Path, settings: dict) -> Path:
    """Where the state of an interrupted run with these settings is kept: one file per run, named by its settings."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return models_dir / "resume" / f"{digest}.pt"


def load_resume_state(path: Path, settings: dict, device: torch.device) -> dict:
    """The state of the interrupted run with these settings; a HygieError if there is none, naming what differs."""
    if not path.is_file():
        others = sorted(path.parent.glob("*.pt"), key=lambda p: p.stat().st_mtime)
        if not others:
            raise HygieError(f"{path.parent}: there is no interrupted run to resume. Run with train.resume=false.")
        old = torch.load(others[-1], map_location="cpu", weights_only=True)["settings"]
        differs = "; ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v)
        raise HygieError(
            f"{path.parent}: no interrupted run has these settings; the interrupted run had other settings "
            f"({differs}). Resuming would mix two runs: put those settings back, or start over with train.resume=false."
        )
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # any failure means the file is not a usable resume state
        raise HygieError(f"{path}: unreadable ({type(e).__name__}). Delete it and run with train.resume=false.") from e


def fit(
    crops_path: str | os.PathLike,
    mel_path: str | os.PathLike,
    shapes_path: str | os.PathLike,
    sync_path: str | os.PathLike,
    *,
    model_kwargs: dict,
    cfg: TrainConfig,
    models_dir: str | os.PathLike,
    live,
    resume: bool = False,
) -> dict[str, float]:
    """Train on one prepared clip -> models_dir/best.pt (lowest validation loss); logs to a dvclive `live`.

    How the inputs were made (crop size, padding, fps, mel settings) is read from the prepared files themselves, and
    the recording's shape model (train_shape: mouth shapes, audio -> shape, A/V offset) travels in the checkpoint.
    After every epoch the whole run (weights, best weights, optimizer, RNGs, per-epoch metrics, settings) is saved
    atomically to models_dir/resume/<settings hash>.pt, which no DVC stage declares, so nothing restores another
    run's file over it and other runs do not touch it; it is deleted when the run completes. `resume` continues
    the interrupted run with the same settings (epochs may differ) and re-logs its earlier epochs, so the curves
    are this run's alone.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = best_device()
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    crops, mel, shapes = Crops.load(crops_path), Mel.load(mel_path), ShapeModel.load(shapes_path)
    critics = Critics(
        SyncExpert.load(sync_path) if cfg.w_sync else None, Adversary(cfg.lr, device) if cfg.w_gan else None
    )
    clip = SYNC_FRAMES if cfg.w_sync else CLIP  # the expert judges 5-frame clips
    data = DataInfo.of(crops, mel, mel_win=cfg.mel_win)
    gap = heldout_gap(cfg.mel_win, mel.per_frame, shapes.offset)
    split = time_split(crops.face, train_split=cfg.train_split, gap=gap, clip=clip)
    if len(split.val) == 0:
        raise HygieError(
            f"{crops_path}: no validation clips (frames with a face after the first {cfg.train_split:.0%}); "
            "record a longer video (5-15 min) or lower train.TRAIN_SPLIT."
        )
    if len(split.train) < cfg.batch_size:
        raise HygieError(
            f"{crops_path}: only {len(split.train)} training clips for a batch of {cfg.batch_size}; "
            "record a longer video (5-15 min) or lower train.batch_size."
        )
    batches = MouthBatches(
        crops,
        mel,
        shapes,
        cond=model_kwargs["cond"],
        mel_win=cfg.mel_win,
        ref_pool=split.train_frames,
        ref_gap=reference_gap(cfg.mel_win, mel.per_frame),
        clip=clip,
    )
    model = HygieUNetLite(mask=torch.from_numpy(crops.mask), n_mels=mel.n_mels, mel_win=cfg.mel_win, **model_kwargs)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = cosine_schedule(opt, cfg.epochs * (len(split.train) // cfg.batch_size))
    models_dir = Path(models_dir)
    settings = {**run_settings(cfg, model_kwargs, data, crops.source), "shapes": fingerprint(shapes_path)}
    if cfg.w_sync:
        settings["sync"] = fingerprint(sync_path)
    state_path = resume_path(models_dir, settings)
    start_epoch, best, best_weights, history = 0, float("inf"), None, []
    if resume:
        state = load_resume_state(state_path, settings, device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best, best_weights, history = (
            state["epoch"],
            state["best_val_loss"],
            state["best_model"],
            state["history"],
        )
        torch.set_rng_state(state["torch_rng"].cpu())
        rng.bit_generator.state = state["numpy_rng"]
        if critics.adversary:
            critics.adversary.d.load_state_dict(state["adversary"])
            critics.adversary.opt.load_state_dict(state["adversary_optimizer"])
        for row in history:  # the earlier epochs' curves, so the logs hold this run alone
            for name, value in row.items():
                live.log_metric(name, value)
            live.next_step()
        best_epoch = 1 + int(np.argmin([row["val/loss"] for row in history]))
        _save_best(
            models_dir / "best.pt", model, best_weights, data, shapes, best_epoch
        )  # DVC deleted it before the stage
        print(f"resuming after epoch {start_epoch} (best val loss {best:.4f})")
    print(f"{count_params(model):,} params on {device}; {len(split.train)} training clips, {len(split.val)} validation")

    for epoch in range(start_epoch, cfg.epochs):
        critics.adversarial = bool(cfg.w_gan) and epoch >= cfg.gan_warmup
        train_loss, speed = train_one_epoch(
            model, batches, split.train, opt, sched, cfg, rng, device, f"epoch {epoch + 1}/{cfg.epochs}", critics
        )
        val, shown = validate(model, batches, split.val, cfg, device, critics)
        # with an adversary, reconstruction alone would always prefer the epochs before it joined: they cannot win
        improved = val["loss"] < best and (critics.adversarial or not cfg.w_gan)
        if improved:
            best, best_weights = val["loss"], {k: v.detach().clone() for k, v in model.state_dict().items()}
            _save_best(models_dir / "best.pt", model, best_weights, data, shapes, epoch + 1)
        row = {
            "train/loss": train_loss,
            "val/loss": val["loss"],
            "val/psnr_mouth": val["psnr_mouth"],
            "val/ssim_mouth": val["ssim_mouth"],
            "train/samples_per_s": speed,
        }
        if critics.adversarial:
            row["train/critic_loss"] = float(np.mean(critics.adversary.losses))
            critics.adversary.losses.clear()
        history.append(row)
        state = {
            "settings": settings,
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "best_model": best_weights,
            "best_val_loss": best,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": rng.bit_generator.state,
            "history": history,
        }
        if critics.adversary:
            state["adversary"] = critics.adversary.d.state_dict()
            state["adversary_optimizer"] = critics.adversary.opt.state_dict()
        save_state(state_path, state)
        for name, value in row.items():
            live.log_metric(name, value)
        live.log_image("preview.png", preview(shown))
        live.next_step()
        print(
            f"epoch {epoch + 1}: train {train_loss:.4f}  val {val['loss']:.4f}  mouth PSNR {val['psnr_mouth']:.2f} dB "
            f"SSIM {val['ssim_mouth']:.3f}  {speed:.1f} samples/s{'  *best' if improved else ''}"
        )
    state_path.unlink(missing_ok=True)  # the run is complete: nothing left to resume
    summary = {
        "best_val_loss": best,
        "final_val_loss": history[-1]["val/loss"] if history else best,
        "epochs": cfg.epochs,
    }
    for key, value in summary.items():
        live.summary[key] = value
    return summary


def _save_best(path: Path, model: HygieUNetLite, weights: dict, data: DataInfo, shapes: ShapeModel, epoch: int) -> None:
    """Write the best weights (of `epoch`) as an inference checkpoint; the model's own weights are left as they are."""
    best = build_model(model.config, data)
    best.load_state_dict(weights)
    save_checkpoint(path, best, data, shapes, {"epoch": epoch})
