"""Training batches from prepared crops and mel: 2-frame clips, their audio, references, sync-safe augmentation."""

from __future__ import annotations

import numpy as np
import torch

from hygie_lib.audio import mel_windows
from hygie_lib.split import CLIP, pick_references


class MouthBatches:
    """Assembles model inputs for clip start frames from in-memory crops [N, S, S, 3] uint8 and mel [n_mels, C]."""

    def __init__(
        self, crops: np.ndarray, mel: np.ndarray, *, per_frame: int, mel_win: int, ref_pool: np.ndarray, ref_gap: int
    ) -> None:
        self.crops = torch.from_numpy(np.ascontiguousarray(crops))  # [N, S, S, 3] uint8
        self.mel, self.per_frame, self.mel_win = mel, per_frame, mel_win
        self.ref_pool, self.ref_gap = ref_pool, ref_gap

    def images(self, frames: np.ndarray) -> torch.Tensor:
        """Crops of `frames` as float [*frames.shape, 3, S, S] in [0, 1]."""
        x = self.crops[torch.from_numpy(frames)].float().div_(255.0)
        return x.movedim(-1, -3)

    def batch(self, starts: np.ndarray, rng: np.random.Generator, *, augment: bool) -> dict[str, torch.Tensor]:
        """target [B, CLIP, 3, S, S], mel [B, CLIP, 1, n_mels, win], ref [B, 3, S, S] for clips starting at `starts`."""
        frames = starts[:, None] + np.arange(CLIP)  # [B, CLIP]
        target = self.images(frames)
        ref = self.images(pick_references(starts, self.ref_pool, self.ref_gap, rng))
        if augment:
            target, ref = _jitter(target, ref, rng)
        mel = mel_windows(self.mel, frames, per_frame=self.per_frame, win=self.mel_win)
        return {
            "target": target,
            "ref": ref,
            "mel": torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)).unsqueeze(2),
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
