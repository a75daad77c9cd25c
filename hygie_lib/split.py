"""Which frames train and which validate (a split by time with an audio-wide gap), and reference frames."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CLIP = 2  # frames per training sample: (t, t+1), so the temporal loss compares truly consecutive frames


def audio_span(mel_win: int, per_frame: int) -> int:
    """How many frames apart two frames must be to hear no common mel column (a frame hears `mel_win` columns)."""
    return math.ceil(mel_win / per_frame)


def heldout_gap(mel_win: int, per_frame: int, av_offset: int) -> int:
    """Frames between the training and validation blocks: the audio a frame hears, wherever the A/V offset puts it."""
    return audio_span(mel_win, per_frame) + abs(av_offset)


def reference_gap(mel_win: int, per_frame: int) -> int:
    """The one rule, in training and evaluation: a reference frame is this far from its target clip's start, or more."""
    return audio_span(mel_win, per_frame) + CLIP


@dataclass(frozen=True)
class Split:
    """Clip start frames of each block, and every face frame of each block."""

    train: np.ndarray  # clip starts in the training block
    val: np.ndarray  # clip starts in the validation block
    train_frames: np.ndarray  # face frames of the training block: the pool references are drawn from
    val_frames: np.ndarray  # face frames of the validation block: what evaluation regenerates


def time_split(face: np.ndarray, *, train_split: float, gap: int, clip: int = CLIP) -> Split:
    """The first `train_split` of the frames train, the rest after `gap` frames validates; samples are `clip` frames.

    Contiguous blocks in time with a gap of at least `audio_span` frames between them, so no validation
    frame hears audio a training frame heard. A clip is kept only if all its frames have a face and lie in
    one block; frames without a face are never samples but keep their place in time.
    """
    n = len(face)
    cut = int(round(n * train_split))
    lo = min(n, cut + gap)

    def starts(a: int, b: int) -> np.ndarray:
        t = np.arange(a, max(a, b - clip + 1))
        return t[np.all([face[t + k] for k in range(clip)], axis=0)] if len(t) else t

    return Split(starts(0, cut), starts(lo, n), np.flatnonzero(face[:cut]), np.flatnonzero(face[lo:]) + lo)


def pick_references(targets: np.ndarray, pool: np.ndarray, min_gap: int, rng: np.random.Generator) -> np.ndarray:
    """For each target frame a random frame of `pool` at least `min_gap` (`reference_gap`) frames away."""
    if len(pool) == 0 or (pool.max() - pool.min()) < 2 * min_gap:
        raise ValueError(f"too few frames to pick references at least {min_gap} frames from each target")
    refs = rng.choice(pool, size=len(targets))
    bad = np.abs(refs - targets) < min_gap
    while bad.any():
        refs[bad] = rng.choice(pool, size=int(bad.sum()))
        bad = np.abs(refs - targets) < min_gap
    return refs


def near_references(
    targets: np.ndarray, pool: np.ndarray, shapes: np.ndarray, min_gap: int, rng: np.random.Generator, k: int = 8
) -> np.ndarray:
    """For each target frame one of the `k` frames of `pool` at least `min_gap` frames away whose mouth shapes
    (`shapes` [N, K], indexed by frame) are nearest its own: the kind of reference render.mouth blend shows."""
    dist = ((shapes[targets][:, None] - shapes[pool][None]) ** 2).sum(-1)  # [B, P]
    dist[np.abs(pool[None] - targets[:, None]) < min_gap] = np.inf
    k = min(k, len(pool))
    nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]  # [B, k]
    picks = nearest[np.arange(len(targets)), rng.integers(0, k, len(targets))]
    return pool[picks]
