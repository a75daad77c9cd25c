"""Training batches from prepared crops and mel: clips of consecutive frames, their condition, reference frames,
and sync-safe augmentation."""

from __future__ import annotations

import numpy as np
import torch

from hygie_lib.audio import Mel, mel_windows
from hygie_lib.audio2shape import ShapeModel
from hygie_lib.crops import Crops
from hygie_lib.shape import sketches
from hygie_lib.split import CLIP, near_references, pick_references
from hygie_lib.syncnet import audio_windows


class MouthBatches:
    """Assembles model inputs for clip start frames from in-memory crops and mel.

    The condition of a frame is what the generator must draw: for `cond` "shape", the frame's own mouth shape
    (its PCA projection in `shapes.space`, drawn at its pose); for "audio", its mel window, taken `shapes.offset`
    frames later (the recording's A/V offset).
    """

    def __init__(
        self,
        crops: Crops,
        mel: Mel,
        shapes: ShapeModel,
        *,
        cond: str,
        mel_win: int,
        ref_pool: np.ndarray,
        ref_gap: int,
        clip: int = CLIP,
    ) -> None:
        self.crops = torch.from_numpy(np.ascontiguousarray(crops.crops))  # [N, S, S, 3] uint8
        self.landmarks, self.boxes, self.size = crops.landmarks, crops.boxes, crops.size
        self.mel, self.per_frame, self.mel_win, self.cond = mel.mel, mel.per_frame, mel_win, cond
        self.shapes = shapes
        self.coefficients = np.nan_to_num(shapes.space.coefficients(crops.landmarks))  # [N, K]
        self.ref_pool, self.ref_gap, self.clip = ref_pool, ref_gap, clip

    def images(self, frames: np.ndarray) -> torch.Tensor:
        """Crops of `frames` as float [*frames.shape, 3, S, S] in [0, 1]."""
        x = self.crops[torch.from_numpy(frames)].float().div_(255.0)
        return x.movedim(-1, -3)

    def conditions(self, frames: np.ndarray) -> torch.Tensor:
        """Conditions of `frames` [B, T]: sketches [B, T, 3, S, S] or mel windows [B, T, 1, n_mels, win]."""
        flat = frames.reshape(-1)
        if self.cond == "shape":
            c = sketches(self.shapes.space, self.coefficients[flat], self.landmarks[flat], self.boxes[flat], self.size)
        else:
            c = mel_windows(self.mel, flat + self.shapes.offset, per_frame=self.per_frame, win=self.mel_win)[:, None]
        return torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32)).view(*frames.shape, *c.shape[1:])

    def batch(
        self, starts: np.ndarray, rng: np.random.Generator, *, augment: bool, near: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """target [B, T, 3, S, S], cond [B, T, ...], ref [B, 3, S, S] and the clip's middle frame's audio for the sync
        expert, sync_mel [B, n_mels, SYNC_FRAMES * per_frame], for clips of T frames starting at `starts`. References
        are random; a share `near` of them (drawn at random) are mouths of nearly the clip's first frame's shape."""
        frames = starts[:, None] + np.arange(self.clip)  # [B, T]
        target, cond = self.images(frames), self.conditions(frames)
        refs = pick_references(starts, self.ref_pool, self.ref_gap, rng)
        if near:  # as render.mouth blend shows them: real mouths of nearly the same shape
            pick = rng.random(len(starts)) < near
            refs[pick] = near_references(starts[pick], self.ref_pool, self.coefficients, self.ref_gap, rng)
        ref = self.images(refs)
        if augment:
            target, sketch, ref = _jitter(target, cond if self.cond == "shape" else None, ref, rng)
            cond = cond if sketch is None else sketch
        sync_mel = audio_windows(self.mel, starts + self.clip // 2 + self.shapes.offset, per_frame=self.per_frame)
        return {"target": target, "ref": ref, "cond": cond, "sync_mel": torch.from_numpy(sync_mel.astype(np.float32))}


def _jitter(
    target: torch.Tensor, sketch: torch.Tensor | None, ref: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Light augmentation that keeps sync: per-sample colour gain/offset and a shift of up to 3 px.

    A clip's frames get the same change (a drawn shape moves with its frame), and the audio is untouched.
    """
    b = target.shape[0]
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, (b, 1, 3, 1, 1)).astype(np.float32))
    offset = torch.from_numpy(rng.uniform(-0.06, 0.06, (b, 1, 1, 1, 1)).astype(np.float32))
    target = (target * gain + offset).clamp_(0.0, 1.0)
    ref = (ref * gain[:, 0] + offset[:, 0]).clamp_(0.0, 1.0)
    shifts = [(int(dy), int(dx)) for dy, dx in rng.integers(-3, 4, (b, 2))]
    target = torch.stack([torch.roll(t, s, dims=(-2, -1)) for t, s in zip(target, shifts)])
    if sketch is not None:
        sketch = torch.stack([torch.roll(t, s, dims=(-2, -1)) for t, s in zip(sketch, shifts)])
    return target, sketch, ref
