"""Mouth boxes from rigid face landmarks, zero-lag box smoothing, square mouth crops and the fixed mouth mask.

Why the box and the mask ignore the lips' current shape: in training the network sees the crop with the
mouth region hidden and must draw the mouth from the audio. If the box followed the lips (it grows and
drops as the jaw opens) or the mask were the current lips' hull, the crop geometry or the hole's shape
would tell the network how open the mouth is, and at render time the template's closed mouth would tell
it "closed" whatever the audio says. So the box is placed from landmarks that do not move with speech
(eye centres give scale and roll, the nose gives position) and the mask is one fixed superellipse in crop
coordinates.

The mask hides everything that moves with speech, not just the lips: the jaw line, the chin at full jaw drop
and the lower cheeks. Left visible, they tell the network how open the mouth is (the template's jaw at render
time), and it copies them instead of listening. Its extent was measured on the real clips of ../shared/data
(FaceMesh, in eye distances below the nose centroid): lips 0.36 to 1.14, chin 1.24 to 1.68, the jaw line at
mouth height 0.85 to 1.07 to each side; `hygie probe` draws it with the lips and the jaw line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.signal import lfilter, lfilter_zi
from tqdm import tqdm

from hygie_lib.io import HygieError, fingerprint, save_npz
from hygie_lib.landmarks import NOSE, face_axes
from hygie_lib.video import iter_frames

MASK_TOP, MASK_BOTTOM = 0.25, 1.9  # mask extent below the nose centroid (eye distances): under the nose, under the chin
MASK_HALF_WIDTH = 1.0  # mask half-width (eye distances): past the jaw line and over the lower cheeks
MASK_POWER = 3.0  # superellipse |x/a|^p + |y/b|^p <= 1: squarer than an ellipse, so the jaw's corners fit
BORDER = 0.04  # fraction of the crop side left unmasked on every edge, for the blend's boundary
NOSE_TO_CENTRE = (MASK_TOP + MASK_BOTTOM) / 2  # the box is centred on the mask
# resampling of crops and of mouths pasted back: Lanczos keeps the lips' edges; bilinear, twice, halves their
# high-frequency energy (README, "Sharp mouths": benchmarks/sharpness.py)
RESAMPLE = cv2.INTER_LANCZOS4
WINDOW_MARGIN = 8  # pixels kept around a box in `frame_windows`: Lanczos reads 4 beyond where it samples


def mouth_boxes(landmarks: np.ndarray, pad: float) -> np.ndarray:
    """Square mouth boxes [N, 3] = (cx, cy, side) in pixels from [N, 478, 3] landmarks; NaN rows where no face.

    side = (1 + pad) * eye distance, centre NOSE_TO_CENTRE eye distances below the nose along the face's own
    down axis, so head roll is followed.
    """
    iod, down = face_axes(landmarks)  # [N], [N, 2]
    centre = landmarks[:, NOSE, :2].mean(1) + down * (NOSE_TO_CENTRE * iod)[:, None]
    return np.column_stack([centre, (1.0 + pad) * iod]).astype(np.float64)


def smooth_boxes(boxes: np.ndarray, alpha: float) -> np.ndarray:
    """Fill no-face gaps by holding the nearest box, then EMA forwards and backwards (zero lag).

    `alpha` is the weight of the previous value (0 = no smoothing, 0.9 = heavy), as in the seed's EMA_ALPHA.
    """
    if not 0.0 <= alpha < 1.0:
        raise HygieError(f"build_crops.EMA_ALPHA must be in [0, 1), got {alpha}.")
    valid = ~np.isnan(boxes).any(axis=1)
    if not valid.any():
        raise HygieError("no frame has a face, so there is no mouth box to smooth.")
    idx = np.where(valid, np.arange(len(boxes)), 0)
    np.maximum.accumulate(idx, out=idx)  # index of the last valid box at or before each frame
    idx[: np.argmax(valid)] = np.argmax(valid)  # before the first face: hold the first box
    filled = boxes[idx]
    b, a = [1.0 - alpha], [1.0, -alpha]

    def ema(x: np.ndarray) -> np.ndarray:
        return lfilter(b, a, x, axis=0, zi=lfilter_zi(b, a)[:, None] * x[:1])[0]

    return ema(ema(filled)[::-1])[::-1]


def crop_matrix(box: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine matrix mapping frame pixels to crop pixels for box (cx, cy, side)."""
    cx, cy, side = box
    s = size / side
    return np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy]])


def _flags(m: np.ndarray, interp: int) -> int:
    """warpAffine flags for the affine `m`: nearest where it is a whole-pixel shift (an exact copy, several times
    faster than resampling), `interp` otherwise."""
    shift = np.array_equal(m[:, :2], np.eye(2)) and np.array_equal(m[:, 2], np.round(m[:, 2]))
    return cv2.INTER_NEAREST if shift else interp


def crop(frame: np.ndarray, box: np.ndarray, size: int, interp: int = RESAMPLE) -> np.ndarray:
    """The box's square crop resized to [size, size, 3]; parts outside the frame repeat the border."""
    m = crop_matrix(box, size)
    return cv2.warpAffine(frame, m, (size, size), flags=_flags(m, interp), borderMode=cv2.BORDER_REPLICATE)


def grid_boxes(boxes: np.ndarray, side: int) -> np.ndarray:
    """Boxes [B, 3] of `side` frame pixels on the frame's pixel grid, each centred on its box of `boxes` [B, 3] to
    the pixel: their crops of `side` pixels are the frame's own pixels, copied, not resampled."""
    corners = np.floor(boxes[:, :2] - side / 2 + 0.5)
    return np.concatenate([corners + side / 2, np.full((len(boxes), 1), float(side))], 1)


def crop_to_crop(box: np.ndarray, size: int, to_box: np.ndarray, to_size: int) -> np.ndarray:
    """2x3 affine matrix mapping the pixels of box's crop of side `size` to those of to_box's crop of `to_size`."""
    a, b = np.eye(3), np.eye(3)
    a[:2], b[:2] = crop_matrix(box, size), crop_matrix(to_box, to_size)
    return (b @ np.linalg.inv(a))[:2]


def recrop(
    img: np.ndarray, box: np.ndarray, to_box: np.ndarray, size: int, interp: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """A crop [S, S, ...] of `box` resampled into the crop of `to_box` of side `size`."""
    m = crop_to_crop(box, img.shape[0], to_box, size)
    return cv2.warpAffine(img, m, (size, size), flags=_flags(m, interp), borderMode=cv2.BORDER_REPLICATE)


def per_channel(weight: np.ndarray, channels: int = 3) -> np.ndarray:
    """A weight [H, W] as [H, W, channels], to multiply images by: numpy broadcasts over a short last axis about ten
    times slower than it multiplies arrays of one shape (the render's detail and blend steps, benchmarks/render.py)."""
    return cv2.merge([weight] * channels)


def box_roi(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer frame rectangle (x0, y0, x1, y1) covering the box, clipped to the frame."""
    cx, cy, side = box
    x0, y0 = max(0, int(np.floor(cx - side / 2))), max(0, int(np.floor(cy - side / 2)))
    x1, y1 = min(width, int(np.ceil(cx + side / 2)) + 1), min(height, int(np.ceil(cy + side / 2)) + 1)
    return x0, y0, x1, y1


def uncrop(img: np.ndarray, box: np.ndarray, roi: tuple[int, int, int, int], interp: int = RESAMPLE) -> np.ndarray:
    """A crop-space image [S, S, ...] warped back onto the frame rectangle `roi` of its box."""
    x0, y0, x1, y1 = roi
    m = crop_matrix(box, img.shape[0])
    m[:, 2] += m[:, :2] @ np.array([x0, y0])  # frame -> crop, for ROI pixel coordinates
    return cv2.warpAffine(
        img, m, (x1 - x0, y1 - y0), flags=_flags(m, interp) | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def frame_windows(
    video: str | os.PathLike, fps: float, boxes: np.ndarray, frames: np.ndarray, size: int, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The recorded pixels around the crop boxes [N, 3] of `frames` [n] of `video`, not resampled: windows
    [n, W, W, 3] uint8 (W the largest box's side and a margin; past the frame's edge its border repeats) and affines
    [n, 2, 3] from the pixels of crops of side `size` to window pixels."""
    side = int(np.ceil(boxes[frames, 2].max())) + 2 * WINDOW_MARGIN
    windows = np.zeros((len(frames), side, side, 3), np.uint8)
    to_window = np.zeros((len(frames), 2, 3), np.float32)
    where = {int(t): j for j, t in enumerate(frames)}
    bar = tqdm(total=len(frames), desc=f"mouths {Path(video).name}", unit="frame", disable=not progress)
    for t, frame in enumerate(iter_frames(video, fps)):
        j = where.pop(t, None)
        if j is not None:
            origin = np.round(boxes[t, :2]) - side // 2  # integer: the window is a plain copy of frame pixels
            shift = np.array([[1.0, 0.0, -origin[0]], [0.0, 1.0, -origin[1]]])
            windows[j] = cv2.warpAffine(
                frame, shift, (side, side), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE
            )
            to_window[j] = cv2.invertAffineTransform(crop_matrix(boxes[t], size))
            to_window[j, :, 2] -= origin
            bar.update()
        if not where:
            break
    bar.close()
    if where:
        raise HygieError(f"{video}: ends before frame {frames.max()}; rebuild its crops (`dvc repro`).")
    return windows, to_window


def mouth_mask(size: int, pad: float) -> np.ndarray:
    """The fixed mouth mask [size, size] uint8 (1 inside) of crops made with MOUTH_PAD `pad`: lips, jaw and chin."""
    side = 1.0 + pad  # crop side in eye distances
    a, b = MASK_HALF_WIDTH / side, (MASK_BOTTOM - MASK_TOP) / 2 / side  # semi-axes, fractions of the crop side
    if max(a, b) > 0.5 - BORDER:
        least = max(MASK_HALF_WIDTH, (MASK_BOTTOM - MASK_TOP) / 2) / (0.5 - BORDER) - 1.0
        raise HygieError(
            f"build_crops.MOUTH_PAD {pad} makes the crop too small for the mouth region (lips, jaw and chin) "
            f"and a border to blend in; use {least:.2f} or more."
        )
    u = (np.arange(size) + 0.5) / size - 0.5  # pixel centres, from the crop centre, as fractions of the side
    return ((np.abs(u[None, :]) / a) ** MASK_POWER + (np.abs(u[:, None]) / b) ** MASK_POWER <= 1.0).astype(np.uint8)


@dataclass(frozen=True)
class Crops:
    """A clip's mouth crops and how they were made (the build_crops output; a template's prepared form)."""

    crops: np.ndarray  # [N, S, S, 3] uint8 RGB
    boxes: np.ndarray  # [N, 3] float32 (cx, cy, side) in frame pixels, smoothed
    face: np.ndarray  # [N] bool, a face was found
    landmarks: np.ndarray  # [N, 478, 3] float32 FaceMesh points in frame pixels, NaN where no face
    mask: np.ndarray  # [S, S] uint8, 1 where the mouth is hidden and regenerated
    pad: float  # MOUTH_PAD
    alpha: float  # EMA_ALPHA
    fps: float  # frame rate the video was read at
    source: str  # fingerprint of the video they were cut from

    @property
    def size(self) -> int:
        """Side of the square crops (IMG_SIZE)."""
        return self.crops.shape[1]

    def save(self, path: str | os.PathLike) -> None:
        """Write a deterministic .npz, atomically."""
        save_npz(
            path,
            crops=self.crops,
            boxes=self.boxes,
            face=self.face,
            landmarks=self.landmarks,
            mask=self.mask,
            pad=np.float64(self.pad),
            alpha=np.float64(self.alpha),
            fps=np.float64(self.fps),
            source=np.str_(self.source),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Crops:
        """Read a build_crops output; a HygieError names a file of another layout."""
        try:
            with np.load(path) as z:
                return cls(
                    z["crops"],
                    z["boxes"],
                    z["face"],
                    z["landmarks"],
                    z["mask"],
                    float(z["pad"]),
                    float(z["alpha"]),
                    float(z["fps"]),
                    str(z["source"]),
                )
        except (OSError, KeyError, ValueError) as e:
            raise HygieError(
                f"{path}: not a crops file made by build_crops ({e}). Rerun `dvc repro build_crops`."
            ) from e

    def fits(self, *, size: int, pad: float, fps: float, mask: np.ndarray) -> bool:
        """Whether these crops were made like a model's training crops (its size, padding, frame rate and mask)."""
        return (self.size, self.fps) == (size, fps) and abs(self.pad - pad) < 1e-6 and np.array_equal(self.mask, mask)

    def made_from(self, video: str | os.PathLike) -> bool:
        """Whether `video` is the very file these crops were cut from (same content)."""
        return fingerprint(video) == self.source


def build_crops(
    video: str | os.PathLike,
    landmarks: np.ndarray,
    fps: float,
    *,
    size: int,
    pad: float,
    alpha: float,
    progress: bool = True,
) -> Crops:
    """Crops of every frame of `video` (its landmarks [N, 478, 3] at `fps`): square, smoothed, `size` px."""
    face = ~np.isnan(landmarks[:, 0, 0])
    boxes = smooth_boxes(mouth_boxes(landmarks, pad), alpha)
    crops = np.zeros((len(landmarks), size, size, 3), np.uint8)
    n = 0
    bar = tqdm(total=len(landmarks), desc=f"crops {Path(video).name}", unit="frame", disable=not progress)
    for n, frame in enumerate(iter_frames(video, fps)):
        if n >= len(crops):
            break
        crops[n] = crop(frame, boxes[n], size)
        bar.update()
    bar.close()
    if n + 1 < len(crops):
        raise HygieError(f"{video}: has {n + 1} frames but its landmarks have {len(crops)}; rerun detect_landmarks.")
    return Crops(
        crops,
        boxes.astype(np.float32),
        face,
        landmarks.astype(np.float32),
        mouth_mask(size, pad),
        float(pad),
        float(alpha),
        float(fps),
        fingerprint(video),
    )
