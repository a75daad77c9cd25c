"""`hygie probe`: a picture of the first frames with lip landmarks, lip hull, mouth box and mask drawn."""

from __future__ import annotations

import os
from itertools import islice

import cv2
import numpy as np

from hygie_lib.crops import mouth_boxes, mouth_mask, smooth_boxes
from hygie_lib.io import HygieError
from hygie_lib.landmarks import JAW, LIPS, FaceMesh
from hygie_lib.video import iter_frames


def draw_probe(frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray, pad: float) -> np.ndarray:
    """Copy of an RGB frame with lips (green dots), lip hull (blue), jaw line (magenta), mouth box (red) and mask
    outline (yellow): everything that moves with speech must lie inside the mask."""
    out = frame.copy()
    cx, cy, side = box
    x0, y0 = cx - side / 2, cy - side / 2
    cv2.rectangle(out, (round(x0), round(y0)), (round(x0 + side), round(y0 + side)), (255, 0, 0), 2)
    contours, _ = cv2.findContours(mouth_mask(256, pad), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = contours[0][:, 0] * (side / 256) + np.array([x0, y0])
    cv2.polylines(out, [outline.round().astype(np.int32)], True, (255, 220, 0), 1, cv2.LINE_AA)
    if not np.isnan(landmarks[0, 0]):
        jaw = landmarks[JAW, :2].round().astype(np.int32)
        cv2.polylines(out, [jaw], False, (255, 0, 255), 1, cv2.LINE_AA)
        lips = landmarks[LIPS, :2].round().astype(np.int32)
        cv2.polylines(out, [cv2.convexHull(lips)], True, (0, 80, 255), 1, cv2.LINE_AA)
        for x, y in lips:
            cv2.circle(out, (int(x), int(y)), 1, (0, 255, 0), -1)
    return out


def probe_video(
    path: str | os.PathLike, *, fps: float, pad: float, alpha: float, frames: int = 4
) -> tuple[np.ndarray, float]:
    """The first `frames` frames of a video side by side (RGB), each annotated by `draw_probe`, and the mouth box's
    median side in pixels."""
    imgs = list(islice(iter_frames(path, fps), frames))
    with FaceMesh() as mesh:
        lms = np.stack([mesh(img) for img in imgs])
    if np.isnan(lms[:, 0, 0]).all():
        raise HygieError(f"{path}: no face found in the first {len(imgs)} frames. Film the face from the front.")
    boxes = smooth_boxes(mouth_boxes(lms, pad), alpha)
    tiles = [draw_probe(img, lm, box, pad) for img, lm, box in zip(imgs, lms, boxes)]
    scale = min(1.0, 480 / tiles[0].shape[0])
    image = np.hstack([cv2.resize(t, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for t in tiles])
    return image, float(np.nanmedian(boxes[:, 2]))
