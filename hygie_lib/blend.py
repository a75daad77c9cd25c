"""Paste a generated mouth crop back into its frame: Poisson seamlessClone, or a fast feathered alpha blend (BLENDS)."""

from __future__ import annotations

import cv2
import numpy as np

from hygie_lib.crops import crop_matrix

FEATHER = 0.06  # feather blur sigma, fraction of the crop side


def _roi(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer frame rectangle (x0, y0, x1, y1) covering the box, clipped to the frame."""
    cx, cy, side = box
    x0, y0 = max(0, int(np.floor(cx - side / 2))), max(0, int(np.floor(cy - side / 2)))
    x1, y1 = min(width, int(np.ceil(cx + side / 2)) + 1), min(height, int(np.ceil(cy + side / 2)) + 1)
    return x0, y0, x1, y1


def _to_roi(img: np.ndarray, box: np.ndarray, roi: tuple[int, int, int, int], interp: int) -> np.ndarray:
    """Warp a crop-space image back to the frame rectangle `roi`."""
    x0, y0, x1, y1 = roi
    m = crop_matrix(box, img.shape[0])
    m[:, 2] += m[:, :2] @ np.array([x0, y0])  # frame -> crop, for ROI pixel coordinates
    return cv2.warpAffine(
        img, m, (x1 - x0, y1 - y0), flags=interp | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def feather(
    frame: np.ndarray, src: np.ndarray, mask: np.ndarray, box: np.ndarray, roi: tuple[int, int, int, int]
) -> np.ndarray:
    """Alpha blend through the mask blurred by FEATHER of the crop side: fast, a soft edge."""
    x0, y0, x1, y1 = roi
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), FEATHER * mask.shape[0])
    alpha = _to_roi(soft, box, roi, cv2.INTER_LINEAR)[..., None]
    out = frame.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (region + alpha * (src.astype(np.float32) - region) + 0.5).astype(np.uint8)
    return out


def poisson(
    frame: np.ndarray, src: np.ndarray, mask: np.ndarray, box: np.ndarray, roi: tuple[int, int, int, int]
) -> np.ndarray:
    """OpenCV seamlessClone: keeps the generated gradients, takes the colours at the mask border from the frame."""
    x0, y0, _, _ = roi
    hard = (_to_roi(mask * 255, box, roi, cv2.INTER_LINEAR) > 127).astype(np.uint8) * 255
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
    roi = _roi(box, *frame.shape[:2])
    x0, y0, x1, y1 = roi
    if x1 - x0 < 4 or y1 - y0 < 4:
        return frame.copy()
    return BLENDS[mode](frame, _to_roi(mouth, box, roi, cv2.INTER_LINEAR), mask, box, roi)
