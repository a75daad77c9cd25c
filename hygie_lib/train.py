"""Training: losses, rounds of steps, validation with a sync score, early stopping, the best checkpoint, a resumable
run state, dvclive logging, and data parallelism over `torchrun` processes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from queue import Queue
from threading import Thread

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hygie_lib.audio import Mel
from hygie_lib.audio2shape import ShapeModel
from hygie_lib.checkpoint import DataInfo, build_model, save_checkpoint, save_state
from hygie_lib.crops import Crops
from hygie_lib.dataset import MouthBatches
from hygie_lib.device import Workers, autocast_dtype, best_device
from hygie_lib.io import HygieError, fingerprint
from hygie_lib.metrics import psnr, ssim
from hygie_lib.model import HygieUNetLite, PatchDiscriminator, count_params
from hygie_lib.split import CLIP, heldout_gap, reference_gap, time_split
from hygie_lib.syncnet import SYNC_FRAMES, SyncExpert, clip_starts, grey_mouths, sync_loss


@dataclass(frozen=True)
class TrainConfig:
    """Everything the loop needs besides the data; each field is a `train.*` param."""

    mel_win: int  # MEL_WIN: mel columns the model hears per frame, centred on it
    steps: int  # optimiser steps in all: the budget, whatever the recording's length
    eval_every: int  # steps between validations (each one a dvclive step, a checkpoint and a resume point)
    patience: int  # stop after this many validations without a better sync score (0 = never)
    batch_size: int  # clips per step, over all processes
    lr: float
    w_in: float  # L1 weight inside the mouth mask (1 outside)
    w_temporal: float  # weight of the temporal L1 on consecutive frames
    w_ssim: float  # weight of the (1 - SSIM) term inside the mask (0 = off)
    w_sync: float  # weight of the frozen sync expert's verdict on 5-frame clips (0 = off; Wav2Lip's sync loss)
    w_gan: float  # weight of the PatchGAN adversary's verdict on the mouth region (0 = off)
    gan_warmup: int  # steps of reconstruction alone before the adversary joins
    augment: bool
    ref_near: float  # share of references that are mouths of nearly the target's shape (what render.mouth blend shows)
    precision: str  # auto (bf16 autocast where the hardware has it), bf16 or fp32 (hygie_lib.device.PRECISIONS)
    train_split: float  # TRAIN_SPLIT
    seed: int

    @classmethod
    def of(cls, train: dict) -> TrainConfig:
        """From params.yaml's `train` section (keys in capitals keep the seed's names; the model's keys are ignored)."""
        names = {"mel_win": "MEL_WIN", "train_split": "TRAIN_SPLIT"}
        return cls(**{f.name: train[names.get(f.name, f.name)] for f in fields(cls)})


def weighted_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, w_in: float) -> torch.Tensor:
    """L1 with weight `w_in` inside the mouth mask and 1 outside."""
    return ((1.0 + (w_in - 1.0) * mask) * (pred - target).abs()).mean()


def temporal_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and real frame-to-frame changes inside the mask, for clips [B, T, 3, S, S]."""
    return ((pred.diff(dim=1) - target.diff(dim=1)).abs() * mask).mean()


VAL_FRAMES = 500  # validation regenerates at most the first 20 s (at 25 fps) of the held-out block, whole


def _net(model: torch.nn.Module) -> HygieUNetLite:
    """The HygieUNetLite itself, inside a DistributedDataParallel wrapper or not."""
    return getattr(model, "module", model)


def _run(model: torch.nn.Module, b: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Predicted clips [B, T, 3, S, S] for a batch."""
    B, T = b["target"].shape[:2]
    ref = b["ref"].to(device)[:, None].expand(-1, T, -1, -1, -1).flatten(0, 1) if _net(model).reference else None
    out = model(b["target"].to(device).flatten(0, 1), b["cond"].to(device).flatten(0, 1), ref)
    return out.view(B, T, *out.shape[1:])


class Adversary:
    """A PatchGAN critic of the mouth region and its optimizer (hinge loss), trained beside the generator."""

    def __init__(self, lr: float, device: torch.device, workers: Workers | None = None) -> None:
        self.d = PatchDiscriminator().to(device)
        self.opt = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.5, 0.999))
        self.workers = workers or Workers()
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
        self.workers.average_gradients(self.d)
        self.opt.step()
        self.losses.append(loss.item())


@dataclass
class Critics:
    """What judges generated clips besides the real frames: the frozen sync expert and, after its warm-up, the
    adversary."""

    expert: SyncExpert | None = None
    adversary: Adversary | None = None
    adversarial: bool = False  # the adversary's term is on (after train.gan_warmup steps)


def clip_loss(
    model: torch.nn.Module,
    b: dict[str, torch.Tensor],
    cfg: TrainConfig,
    device: torch.device,
    critics: Critics,
):
    """(total loss, predicted clips) of a batch: reconstruction, and the critics' verdicts where they are on."""
    pred = _run(model, b, device)
    target, mask = b["target"].to(device), _net(model).mask
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


def cosine_schedule(opt: torch.optim.Optimizer, total_steps: int, warmup: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate rising linearly over `warmup` steps, then from `lr` down to 2% of it along a half cosine."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.02 + 0.49 * (1 + math.cos(math.pi * done))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_step(
    model: torch.nn.Module,
    b: dict[str, torch.Tensor],
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    device: torch.device,
    critics: Critics | None = None,
) -> float:
    """One optimiser step on a batch (under bf16 autocast where cfg.precision says), then one of the adversary if it
    is on; the loss."""
    critics = critics or Critics()
    dtype = autocast_dtype(device, cfg.precision)
    with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss, pred = clip_loss(model, b, cfg, device, critics)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if cfg.w_gan and critics.adversarial:
        target, mask = b["target"].to(device).flatten(0, 1), _net(model).mask
        critics.adversary.step(target * (1.0 - mask), target, pred.detach().float().flatten(0, 1), mask)
    return loss.item()


def _batches(
    data: MouthBatches, starts: np.ndarray, cfg: TrainConfig, rng: np.random.Generator, n: int, *, ahead: int
) -> Iterator[dict[str, torch.Tensor]]:
    """`n` random training batches. With `ahead` > 0 (on a GPU, where assembling them on the CPU would be the
    bottleneck) a background thread assembles them that many in advance, in pinned memory; the batches, and `rng`
    afterwards, are the same either way."""

    def make() -> dict[str, torch.Tensor]:
        return data.batch(
            rng.choice(starts, cfg.batch_size, replace=False), rng, augment=cfg.augment, near=cfg.ref_near
        )

    if not ahead:
        yield from (make() for _ in range(n))
        return
    queue: Queue = Queue(maxsize=ahead)

    def work() -> None:
        try:
            for _ in range(n):
                b = make()
                queue.put({k: v.pin_memory() for k, v in b.items()} if torch.cuda.is_available() else b)
        except Exception as e:  # noqa: BLE001 - raised again in the training thread
            queue.put(e)

    worker = Thread(target=work, daemon=True)
    worker.start()
    for _ in range(n):
        b = queue.get()
        if isinstance(b, Exception):
            raise b
        yield b
    worker.join()


def _share(b: dict[str, torch.Tensor], workers: Workers) -> dict[str, torch.Tensor]:
    """This process's equal share of a batch that every process assembled alike."""
    n = len(b["target"]) // workers.world
    return {k: v[workers.rank * n : (workers.rank + 1) * n] for k, v in b.items()}


def train_round(
    model,
    data: MouthBatches,
    starts,
    opt,
    sched,
    cfg: TrainConfig,
    rng,
    device,
    step: int,
    n_steps: int,
    critics: Critics,
    workers: Workers,
) -> tuple[float, float]:
    """`n_steps` optimiser steps from step `step` on random batches of training clips: (mean loss, samples/s).

    Every process draws the same batches from the same `rng` and trains on its share of each, so a run over N
    processes takes the steps one process would take with the whole batch.
    """
    model.train()
    total, t0 = 0.0, time.perf_counter()
    bar = tqdm(
        range(step, step + n_steps),
        desc=f"steps {step + 1}-{step + n_steps}/{cfg.steps}",
        unit="step",
        leave=False,
        disable=workers.rank > 0,
    )
    batches = _batches(data, starts, cfg, rng, n_steps, ahead=4 if device.type == "cuda" else 0)
    for s, b in zip(bar, batches):
        critics.adversarial = bool(cfg.w_gan) and s >= cfg.gan_warmup
        total += train_step(model, _share(b, workers), opt, cfg, device, critics)
        sched.step()
        bar.set_postfix(loss=f"{total / (s - step + 1):.4f}")
    loss = workers.sum(total) / (workers.world * n_steps)
    return loss, n_steps * cfg.batch_size / (time.perf_counter() - t0)


def validation_starts(val: np.ndarray) -> np.ndarray:
    """Non-overlapping clips over the first VAL_FRAMES frames of the validation block: a stretch of video to judge."""
    starts = val[val < val[0] + VAL_FRAMES] if len(val) else val
    keep, last = [], -CLIP
    for t in starts:
        if t >= last + CLIP:
            keep.append(t)
            last = t
    return np.asarray(keep, dtype=np.int64)


@torch.no_grad()
def validate(
    model, data: MouthBatches, starts: np.ndarray, cfg: TrainConfig, device, critics: Critics
) -> tuple[dict, dict]:
    """Validation loss (without the adversary's term: a moving target), mouth PSNR and SSIM over the validation clips
    (fixed references), the sync expert's confidence in the regenerated stretch (when there is an expert), and one
    batch to preview."""
    net = _net(model).eval()
    rng = np.random.default_rng(1234)  # the same references every time
    sums, n, first, mouths = {"loss": 0.0, "psnr_mouth": 0.0, "ssim_mouth": 0.0}, 0, None, {}
    for i in range(0, len(starts), cfg.batch_size):
        s = starts[i : i + cfg.batch_size]
        b = data.batch(s, rng, augment=False)
        loss, pred = clip_loss(net, b, cfg, device, replace(critics, adversarial=False))
        pred, k, mask = pred.float().cpu(), len(s), net.mask.cpu()
        sums["loss"] += float(loss) * k
        sums["psnr_mouth"] += psnr(pred, b["target"], mask) * k
        sums["ssim_mouth"] += float(ssim(pred, b["target"], mask)) * k
        n += k
        first = first or {"masked": b["target"] * (1.0 - mask), "pred": pred, "target": b["target"]}
        if critics.expert:
            grey = grey_mouths(pred, mask.numpy()).numpy()  # [k, CLIP, SYNC_SIZE, SYNC_SIZE]
            mouths.update({int(t) + j: grey[q, j] for q, t in enumerate(s) for j in range(pred.shape[1])})
    metrics = {name: value / max(n, 1) for name, value in sums.items()}
    if mouths:
        metrics["sync_confidence"] = _sync_confidence(critics.expert, mouths, data)
    return metrics, first


def _sync_confidence(expert: SyncExpert, mouths: dict[int, np.ndarray], data: MouthBatches) -> float:
    """The expert's confidence that regenerated grey mouths {frame: [SIZE, SIZE]} match the recording's audio."""
    lo, hi = min(mouths), max(mouths) + 1
    have = np.zeros(hi - lo, bool)
    have[np.array(list(mouths)) - lo] = True
    stack = np.zeros((hi - lo, *next(iter(mouths.values())).shape), np.float32)
    for t, m in mouths.items():
        stack[t - lo] = m
    cols = (np.arange((hi - lo) * data.per_frame) + (lo + data.shapes.offset) * data.per_frame).clip(
        0, data.mel.shape[1] - 1
    )
    score = expert.score(stack, data.mel[:, cols], clip_starts(have, np.arange(hi - lo)))
    return score["confidence"]


class NoLive:
    """A dvclive stand-in that keeps nothing: for processes other than rank 0, and benchmarks."""

    summary: dict = {}

    def log_metric(self, *_) -> None: ...
    def log_image(self, *_) -> None: ...
    def next_step(self) -> None: ...


def preview(b: dict, k: int = 6) -> np.ndarray:
    """Image grid (uint8 RGB): rows masked | predicted | real for the first k samples' first frame."""
    rows = [b[name][:k, 0] for name in ("masked", "pred", "target")]  # [k, 3, S, S] each
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # [3, 3S, kS]
    return (grid.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def run_settings(cfg: TrainConfig, model_kwargs: dict, data: DataInfo, source: str) -> dict:
    """Everything that makes a training run what it is, as plain data: a resume must match it (the budget, steps and
    patience, may differ)."""
    train = {k: v for k, v in asdict(cfg).items() if k not in ("steps", "patience")}
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
        # not the temp files (".<name>.<pid>.*.tmp.pt") a kill in the middle of a write leaves
        others = sorted(path.parent.glob("[!.]*.pt"), key=lambda p: p.stat().st_mtime)
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
    on_validation: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train on one prepared clip -> models_dir/best.pt (lowest validation loss); logs to a dvclive `live`.

    How the inputs were made (crop size, padding, fps, mel settings) is read from the prepared files themselves, and
    the recording's shape model (train_shape: mouth shapes, audio -> shape, A/V offset) travels in the checkpoint.
    Training runs `cfg.steps` steps in rounds of `cfg.eval_every`; after each round it validates, and stops early
    once the sync expert (sync_path, read when cfg.w_sync or cfg.patience is on) has not found the regenerated
    validation stretch better in sync for `cfg.patience` validations. After every validation the whole run (weights,
    best weights, optimizer, RNGs, metrics, settings) is saved atomically to models_dir/resume/<settings hash>.pt,
    which no DVC stage declares, so nothing restores another run's file over it and other runs do not touch it; it
    is deleted when the run completes. `resume` continues the interrupted run with the same settings (the budget
    may differ) and re-logs its earlier validations, so the curves are this run's alone. Started by torchrun, each
    process trains on its share of every batch (DistributedDataParallel) and rank 0 alone writes. `on_validation`
    is called on rank 0 after each validation with the step and the seconds spent training so far.
    """
    device = best_device(int(os.environ.get("LOCAL_RANK", "0")))
    workers = Workers.start(device.type)
    if cfg.batch_size % workers.world:
        raise HygieError(f"train.batch_size {cfg.batch_size} does not split into {workers.world} equal shares.")
    if workers.rank:
        live = NoLive()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers.world))
    crops, mel, shapes = Crops.load(crops_path), Mel.load(mel_path), ShapeModel.load(shapes_path)
    critics = Critics(
        SyncExpert.load(sync_path) if cfg.w_sync or cfg.patience else None,
        Adversary(cfg.lr, device, workers) if cfg.w_gan else None,
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
    val_starts = validation_starts(split.val)
    net = HygieUNetLite(mask=torch.from_numpy(crops.mask), n_mels=mel.n_mels, mel_win=cfg.mel_win, **model_kwargs)
    net.to(device)
    model = net if workers.world == 1 else torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = cosine_schedule(opt, cfg.steps, warmup=min(100, cfg.steps // 20))
    models_dir = Path(models_dir)
    settings = {**run_settings(cfg, model_kwargs, data, crops.source), "shapes": fingerprint(shapes_path)}
    if critics.expert:
        settings["sync"] = fingerprint(sync_path)
    state_path = resume_path(models_dir, settings)
    step, best, best_weights, history, seconds = 0, float("inf"), None, [], 0.0
    if resume:
        state = load_resume_state(state_path, settings, device)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, best, best_weights, history = state["step"], state["best_val_loss"], state["best_model"], state["history"]
        seconds = history[-1]["train/minutes"] * 60
        torch.set_rng_state(state["torch_rng"].cpu())
        rng.bit_generator.state = state["numpy_rng"]
        if critics.adversary:
            critics.adversary.d.load_state_dict(state["adversary"])
            critics.adversary.opt.load_state_dict(state["adversary_optimizer"])
        for row in history:  # the earlier validations' curves, so the logs hold this run alone
            _log(live, row)
            live.next_step()
        best_row = history[int(np.argmin([row["val/loss"] for row in history]))]
        if workers.rank == 0:  # DVC deleted it before the stage
            _save_best(models_dir / "best.pt", net, best_weights, data, shapes, best_row["step"])
        print(f"resuming after step {step} (best val loss {best:.4f})")
    if workers.rank == 0:
        print(
            f"{count_params(net):,} params on {device} x {workers.world}, "
            f"{autocast_dtype(device, cfg.precision) or torch.float32}; {len(split.train)} training clips, "
            f"{len(val_starts)} validate"
        )

    while step < cfg.steps and not _patience_spent(history, cfg.patience):
        n_steps, t0 = min(cfg.eval_every, cfg.steps - step), time.perf_counter()
        train_loss, speed = train_round(
            model, batches, split.train, opt, sched, cfg, rng, device, step, n_steps, critics, workers
        )
        step += n_steps
        val, shown = validate(model, batches, val_starts, cfg, device, critics)
        seconds += time.perf_counter() - t0  # training and validating: the wall clock a user waits
        if not math.isfinite(val["loss"]):
            raise HygieError(
                f"training diverged by step {step} (validation loss {val['loss']}): lower train.lr (now {cfg.lr}), "
                "or try train.precision fp32."
            )
        # with an adversary, reconstruction alone would always prefer the steps before it joined: they cannot win
        improved = val["loss"] < best and (critics.adversarial or not cfg.w_gan)
        if improved:
            best, best_weights = val["loss"], {k: v.detach().clone() for k, v in net.state_dict().items()}
            if workers.rank == 0:
                _save_best(models_dir / "best.pt", net, best_weights, data, shapes, step)
        row = {
            "step": step,
            "train/minutes": seconds / 60,
            "train/loss": train_loss,
            **{f"val/{name}": value for name, value in val.items()},
            "train/samples_per_s": speed,
        }
        if critics.adversarial:
            row["train/critic_loss"] = workers.sum(float(np.mean(critics.adversary.losses))) / workers.world
            critics.adversary.losses.clear()
        history.append(row)
        if workers.rank == 0:
            state = {
                "settings": settings,
                "step": step,
                "model": net.state_dict(),
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
        _log(live, row)
        live.log_image("preview.png", preview(shown))
        live.next_step()
        if workers.rank == 0:
            sync = f"  sync {val['sync_confidence']:.3f}" if "sync_confidence" in val else ""
            print(
                f"step {step}: train {train_loss:.4f}  val {val['loss']:.4f}  mouth PSNR {val['psnr_mouth']:.2f} dB "
                f"SSIM {val['ssim_mouth']:.3f}{sync}  {speed:.1f} samples/s  {seconds / 60:.1f} min"
                f"{'  *best' if improved else ''}"
            )
            if on_validation:
                on_validation(step, seconds)
    if workers.rank == 0:
        state_path.unlink(missing_ok=True)  # the run is complete: nothing left to resume
    summary = {
        "best_val_loss": best,
        "final_val_loss": history[-1]["val/loss"] if history else best,
        "steps": step,
        "minutes": round(seconds / 60, 2),
    }
    for key, value in summary.items():
        live.summary[key] = value
    return summary


def _log(live, row: dict) -> None:
    """One validation's metrics to dvclive (whose own step counts validations; the optimiser step is kept apart)."""
    for name, value in row.items():
        if name != "step":
            live.log_metric(name, value)


def _patience_spent(history: list[dict], patience: int) -> bool:
    """Whether the last `patience` validations all failed to beat the best sync confidence before them."""
    sync = [row["val/sync_confidence"] for row in history if "val/sync_confidence" in row]
    return patience > 0 and len(sync) > patience and max(sync[-patience:]) <= max(sync[:-patience])


def _save_best(path: Path, model: HygieUNetLite, weights: dict, data: DataInfo, shapes: ShapeModel, step: int) -> None:
    """Write the best weights (of `step`) as an inference checkpoint; the model's own weights are left as they are."""
    best = build_model(model.config, data)
    best.load_state_dict(weights)
    save_checkpoint(path, best, data, shapes, {"step": step})
