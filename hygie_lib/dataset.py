"""Training batches from prepared crops and mel: a split by time, 2-frame clips, reference frames, augmentation."""
from __future__ import annotations

import numpy as np
import torch

CLIP = 2  # frames per sample: (t, t+1), so the temporal loss compares truly consecutive frames


def time_split(face: np.ndarray, *, train_split: float, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip start frames of the training block [0, cut) and the validation block [cut + gap, N).

    Contiguous blocks in time with `gap` frames between them (>= the audio window), so no validation
    frame hears audio a training frame heard. A clip is kept only if all its frames have a face and lie in
    one block; frames without a face are never samples but keep their place in time.
    """
    n = len(face)
    cut = int(round(n * train_split))

    def starts(lo: int, hi: int) -> np.ndarray:
        t = np.arange(lo, max(lo, hi - CLIP + 1))
        return t[np.all([face[t + k] for k in range(CLIP)], axis=0)] if len(t) else t

    return starts(0, cut), starts(min(n, cut + gap), n)


def mel_windows(mel: np.ndarray, frames: np.ndarray, *, per_frame: int, win: int) -> np.ndarray:
    """Mel windows [*frames.shape, n_mels, win] centred on each frame (edge columns repeated)."""
    start = frames * per_frame - win // 2
    idx = np.clip(start[..., None] + np.arange(win), 0, mel.shape[1] - 1)  # [..., win]
    return np.moveaxis(mel[:, idx], 0, -2)


def pick_references(targets: np.ndarray, pool: np.ndarray, min_gap: int, rng: np.random.Generator) -> np.ndarray:
    """For each target frame a random frame of `pool` at least `min_gap` frames away (never the target or its neighbours)."""
    if len(pool) == 0 or (pool.max() - pool.min()) < 2 * min_gap:
        raise ValueError(f"too few frames to pick references at least {min_gap} frames from each target")
    refs = rng.choice(pool, size=len(targets))
    bad = np.abs(refs - targets) < min_gap
    while bad.any():
        refs[bad] = rng.choice(pool, size=int(bad.sum()))
        bad = np.abs(refs - targets) < min_gap
    return refs


class MouthBatches:
    """Assembles model inputs for clip start frames from in-memory crops [N, S, S, 3] uint8 and mel [n_mels, C]."""

    def __init__(
        self, crops: np.ndarray, mel: np.ndarray, mask: np.ndarray, *, per_frame: int, mel_win: int, ref_pool: np.ndarray
    ) -> None:
        self.crops = torch.from_numpy(np.ascontiguousarray(crops))  # [N, S, S, 3] uint8
        self.mel, self.per_frame, self.mel_win = mel, per_frame, mel_win
        self.mask = torch.from_numpy(mask.astype(np.float32))[None, None]  # [1, 1, S, S]
        self.ref_pool = ref_pool
        self.min_ref_gap = max(CLIP, mel_win // per_frame + 1)

    def images(self, frames: np.ndarray) -> torch.Tensor:
        """Crops of `frames` as float [*frames.shape, 3, S, S] in [0, 1]."""
        x = self.crops[torch.from_numpy(frames)].float().div_(255.0)
        return x.movedim(-1, -3)

    def batch(self, starts: np.ndarray, rng: np.random.Generator, *, augment: bool) -> dict[str, torch.Tensor]:
        """target/masked [B, CLIP, 3, S, S], mel [B, CLIP, 1, n_mels, win], ref [B, 3, S, S], mask [1, 1, S, S]."""
        frames = starts[:, None] + np.arange(CLIP)  # [B, CLIP]
        target = self.images(frames)
        ref = self.images(pick_references(starts, self.ref_pool, self.min_ref_gap, rng))
        if augment:
            target, ref = _jitter(target, ref, rng)
        mel = mel_windows(self.mel, frames, per_frame=self.per_frame, win=self.mel_win)
        return {
            "target": target,
            "masked": target * (1.0 - self.mask),
            "ref": ref,
            "mel": torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)).unsqueeze(2),
            "mask": self.mask,
        }


def _jitter(target: torch.Tensor, ref: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Light augmentation that keeps sync: per-sample colour gain/offset and a shift of up to 3 px.

    A clip's frames get the same change, and the audio is untouched, so the mouth-audio timing is kept.
    """
    b = target.shape[0]
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, (b, 1, 3, 1, 1)).astype(np.float32))
    offset = torch.from_numpy(rng.uniform(-0.06, 0.06, (b, 1, 1, 1, 1)).astype(np.float32))
    target = (target * gain + offset).clamp_(0.0, 1.0)
    ref = (ref * gain[:, 0] + offset[:, 0]).clamp_(0.0, 1.0)
    shifts = rng.integers(-3, 4, (b, 2))
    target = torch.stack([torch.roll(t, (int(dy), int(dx)), dims=(-2, -1)) for t, (dy, dx) in zip(target, shifts)])
    return target, ref
