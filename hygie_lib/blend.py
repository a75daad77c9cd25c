"""Paste a generated mouth crop back into its frame: Poisson seamlessClone, or a fast feathered alpha blend (BLENDS)."""

from __future__ import annotations

import cv2
import numpy as np

from hygie_lib.crops import box_roi, uncrop

FEATHER = 0.06  # feather blur sigma, fraction of the crop side


def feather(
    frame: np.ndarray, src: np.ndarray, mask: np.ndarray, box: np.ndarray, roi: tuple[int, int, int, int]
) -> np.ndarray:
    """Alpha blend through the mask blurred by FEATHER of the crop side: fast, a soft edge."""
    x0, y0, x1, y1 = roi
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), FEATHER * mask.shape[0])
    alpha = uncrop(soft, box, roi, cv2.INTER_LINEAR)[..., None]
    out = frame.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (region + alpha * (src.astype(np.float32) - region) + 0.5).astype(np.uint8)
    return out


def poisson(
    frame: np.ndarray, src: np.ndarray, mask: np.ndarray, box: np.ndarray, roi: tuple[int, int, int, int]
) -> np.ndarray:
    """OpenCV seamlessClone: keeps the generated gradients, takes the colours at the mask border from the frame."""
    x0, y0, _, _ = roi
    hard = (uncrop(mask * 255, box, roi, cv2.INTER_LINEAR) > 127).astype(np.uint8) * 255
    hard[[0, -1], :] = 0  # seamlessClone needs a border of frame pixels around the mask
    hard[:, [0, -1]] = 0
    if not hard.any():
        return frame.copy()
    bx, by, bw, bh = cv2.boundingRect(hard)
    centre = (x0 + bx + bw // 2, y0 + by + bh // 2)  # seamlessClone centres the mask's bounding box here
    return cv2.seamlessClone(src, frame, hard, centre, cv2.NORMAL_CLONE)


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
