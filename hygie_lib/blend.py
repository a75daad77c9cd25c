"""Paste a generated mouth crop back into its frame: Poisson blending, or a faster feathered alpha blend (BLENDS)."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import scipy.fft

from hygie_lib.crops import box_roi, per_channel, uncrop

FEATHER = 0.06  # feather blur sigma, fraction of the crop side


def feather(
    frame: np.ndarray, src: np.ndarray, mask: np.ndarray, box: np.ndarray, roi: tuple[int, int, int, int]
) -> np.ndarray:
    """Alpha blend through the mask blurred by FEATHER of the crop side: fast, a soft edge."""
    x0, y0, x1, y1 = roi
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), FEATHER * mask.shape[0])
    alpha = per_channel(uncrop(soft, box, roi, cv2.INTER_LINEAR))
    out = frame.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (region + alpha * (src.astype(np.float32) - region) + 0.5).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=16)
def _laplacian_eigenvalues(ny: int, nx: int) -> np.ndarray:
    """The 5-point Laplacian's eigenvalues [ny, nx, 3] (per channel) on an ny x nx grid with zero borders, in DST-I
    order."""
    ky = 2 * np.cos(np.pi * np.arange(1, ny + 1) / (ny + 1)) - 2
    kx = 2 * np.cos(np.pi * np.arange(1, nx + 1) / (nx + 1)) - 2
    return per_channel((ky[:, None] + kx[None, :]).astype(np.float32))


def _fast_side(side: int, room: int) -> int:
    """A solve side of at least `side` whose sine transform is fast (side + 1 a product of small primes), if it
    fits in `room`; otherwise as much of `side` as fits."""
    fast = scipy.fft.next_fast_len(side + 1) - 1
    return fast if fast <= room else min(side, room)


def poisson(
    frame: np.ndarray, src: np.ndarray, mask: np.ndarray, box: np.ndarray, roi: tuple[int, int, int, int]
) -> np.ndarray:
    """Poisson blending (Perez et al. 2003): the mouth's own gradients inside the mask, the frame's elsewhere, solved
    exactly on a rectangle around the mask with sine transforms (what OpenCV's seamlessClone does, about 3x faster:
    benchmarks/render.py)."""
    x0, y0, x1, y1 = roi
    hard = uncrop(mask, box, roi, cv2.INTER_LINEAR) > 0.5
    hard[[0, -1], :] = False  # the solve needs a border of frame pixels around the mask
    hard[:, [0, -1]] = False
    if not hard.any():
        return frame.copy()
    bx, by, bw, bh = cv2.boundingRect(hard.view(np.uint8))
    # the rectangle solved on: the mask's bounding box and a margin of frame pixels, inside the ROI
    ny, nx = _fast_side(bh + 2, y1 - y0 - 2), _fast_side(bw + 2, x1 - x0 - 2)
    sy = min(max(by - (ny - bh) // 2, 1), y1 - y0 - 1 - ny)
    sx = min(max(bx - (nx - bw) // 2, 1), x1 - x0 - 1 - nx)
    m = hard[sy : sy + ny, sx : sx + nx].astype(np.float32)
    m3 = per_channel(m)
    dst = frame[y0 + sy : y0 + sy + ny, x0 + sx : x0 + sx + nx]
    diff = (src[sy : sy + ny, sx : sx + nx].astype(np.float32) - dst) * m3
    # the divergence of diff's gradients along the edges with both ends in the mask (zero elsewhere)
    cross = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.float32)
    around = cv2.filter2D(m, -1, cross, borderType=cv2.BORDER_CONSTANT)
    div = (cv2.filter2D(diff, -1, cross, borderType=cv2.BORDER_CONSTANT) - per_channel(around) * diff) * m3
    fix = scipy.fft.idstn(scipy.fft.dstn(div, type=1, axes=(0, 1)) / _laplacian_eigenvalues(ny, nx), 1, axes=(0, 1))
    out = frame.copy()
    out[y0 + sy : y0 + sy + ny, x0 + sx : x0 + sx + nx] = np.clip(dst + fix + 0.5, 0, 255).astype(np.uint8)
    return out


BLENDS = {"poisson": poisson, "feather": feather}  # render.blend: how a generated mouth is pasted back


def paste_mouth(
    frame: np.ndarray, mouth: np.ndarray, box: np.ndarray, mask: np.ndarray, *, mode: str = "poisson"
) -> np.ndarray:
    """A copy of `frame` [H, W, 3] with `mouth` [S, S, 3] (a crop of `box`) blended in where `mask` [S, S] is set."""
    if mode not in BLENDS:
        raise ValueError(f"blend mode must be one of {list(BLENDS)}, got {mode!r}")
    roi = box_roi(box, *frame.shape[:2])
    x0, y0, x1, y1 = roi
    if x1 - x0 < 4 or y1 - y0 < 4:
        return frame.copy()
    return BLENDS[mode](frame, uncrop(mouth, box, roi), mask, box, roi)
