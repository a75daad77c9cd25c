"""Measures shared by training and evaluation: image quality in the mouth, mouth aperture, lip distance, sync lag."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hygie_lib.crops import box_roi, uncrop
from hygie_lib.landmarks import INNER_LIPS, OUTER_LIPS, eye_centres, face_axes

MAX_LAG = 10  # frames searched either way for the sync offset
TEETH_VALUE, TEETH_SATURATION = 140, 90  # a pixel is "teeth" when bright (HSV V >= 140) and pale (S <= 90)
TEETH_BANDWIDTH = 0.01  # teeth_figures' kernel width over openings (eye distances; closed ~0.04, wide open ~0.2)
LIP_MARGIN = 0.1  # lip_sharpness looks this share of the mouth's width beyond the outer lip contour


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean SSIM inside the mask (11x11 Gaussian window, sigma 1.5, reflected borders) of images [..., 3, S, S].

    Always in fp32, autocast or not: in bf16 the variances (differences of near-equal blurs) go negative."""
    with torch.autocast(pred.device.type, enabled=False):
        return _ssim(pred.float(), target.float(), mask)


def _ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`ssim` itself, in the inputs' precision."""
    x, y = pred.reshape(-1, *pred.shape[-3:]), target.reshape(-1, *target.shape[-3:])  # [N, 3, S, S]
    g = torch.exp(-((torch.arange(11, dtype=x.dtype, device=x.device) - 5) ** 2) / (2 * 1.5**2))
    kernel = (torch.outer(g, g) / g.sum() ** 2).expand(3, 1, 11, 11)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(z, (5, 5, 5, 5), mode="reflect"), kernel, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    weight = mask.reshape(1, 1, *mask.shape[-2:]).to(s).expand_as(s)
    return (s * weight).sum() / weight.sum()


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB) inside the mask, images in [0, 1]."""
    weight = mask.expand_as(pred)
    mse = (((pred - target) ** 2) * weight).sum() / weight.sum()
    return float(10 * torch.log10(1.0 / mse.clamp_min(1e-10)))


def mouth_aperture(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip opening [N] along the face's vertical axis, in eye distances (~0 closed); NaN where no face."""
    iod, down = face_axes(landmarks)
    depth = np.einsum("nkd,nd->nk", landmarks[:, INNER_LIPS, :2], down)  # [N, 20] along the face's down axis
    return np.ptp(depth, axis=1) / iod


def closed_level(apertures: np.ndarray) -> float:
    """The speaker's closed-mouth aperture: above it a mouth counts as open (a third of the way from p10 to p90)."""
    lo, hi = np.nanpercentile(apertures, [10, 90])
    return float(lo + (hi - lo) / 3)


def lip_distance(gen: np.ndarray, real: np.ndarray) -> np.ndarray:
    """LMD per frame: mean distance of the lip landmarks, in mouth widths (outer-lip width of the real frame)."""
    lips = np.concatenate([OUTER_LIPS, INNER_LIPS])
    width = np.ptp(real[:, OUTER_LIPS, 0], axis=1)
    # align on the eyes first, so a model is not charged for the head position it did not draw
    offset = np.mean(eye_centres(real), 0) - np.mean(eye_centres(gen), 0)
    return np.linalg.norm(gen[:, lips, :2] + offset[:, None] - real[:, lips, :2], axis=-1).mean(1) / width


def lag_correlation(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """Pearson correlation of x[t] with y[t + lag] over the frames where both are finite."""
    if lag >= 0:
        a, b = x[: len(x) - lag], y[lag:]
    else:
        a, b = x[-lag:], y[: len(y) + lag]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def sync(gen: np.ndarray, real: np.ndarray) -> tuple[float, int]:
    """(correlation at lag 0, the lag in -MAX_LAG..MAX_LAG frames with the highest correlation) of two apertures."""
    lags = {lag: lag_correlation(gen, real, lag) for lag in range(-MAX_LAG, MAX_LAG + 1)}
    return lags[0], int(max(lags, key=lambda k: -np.inf if np.isnan(lags[k]) else lags[k]))


def sharpness(frame: np.ndarray, box: np.ndarray, mask: np.ndarray) -> float:
    """High-frequency energy of an RGB frame in the mouth mask [S, S] of `box`, in the frame's own pixels (what the
    viewer sees; nothing resampled): variance of the grey Laplacian, the mask's edge left out."""
    roi = box_roi(box, *frame.shape[:2])
    x0, y0, x1, y1 = roi
    inside = uncrop(mask.astype(np.uint8) * 255, box, roi, cv2.INTER_NEAREST) > 127
    inside = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return _laplacian_variance(frame[y0:y1, x0:x1], inside)


def lip_sharpness(frame: np.ndarray, landmarks: np.ndarray) -> float:
    """`sharpness` on the lips alone: inside the outer-lip polygon grown by LIP_MARGIN of the mouth's width (the lips,
    the teeth and the lip edges, without the cheeks, chin and collar the mask also holds); NaN without a face."""
    if np.isnan(landmarks[0, 0]):
        return float("nan")
    lips = np.round(landmarks[OUTER_LIPS, :2]).astype(np.int32)
    grow = max(1, round(LIP_MARGIN * np.ptp(lips[:, 0])))
    x0, y0 = np.maximum(lips.min(0) - grow - 1, 0)
    x1, y1 = lips.max(0) + grow + 2
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(inside, [lips - (x0, y0)], 1)
    inside = cv2.dilate(inside, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return _laplacian_variance(frame[y0:y1, x0:x1], inside[: frame.shape[0] - y0, : frame.shape[1] - x0] > 0)


def _laplacian_variance(rgb: np.ndarray, inside: np.ndarray) -> float:
    """Variance of the grey Laplacian of an RGB image at the pixels where `inside` (bool, same size) holds."""
    lap = cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)
    return float(lap[inside].var())


def teeth_fraction(frame: np.ndarray, landmarks: np.ndarray) -> float:
    """Share of bright, pale (teeth) pixels inside the inner-lip polygon of an RGB frame; NaN without a face or an
    opening."""
    if np.isnan(landmarks[0, 0]):
        return float("nan")
    inside = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(landmarks[INNER_LIPS, :2]).astype(np.int32)], 1)
    if inside.sum() < 4:
        return float("nan")
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)[inside.astype(bool)]
    return float(np.mean((hsv[:, 2] >= TEETH_VALUE) & (hsv[:, 1] <= TEETH_SATURATION)))


def teeth_figures(
    real_teeth: np.ndarray, gen_teeth: np.ndarray, real_ap: np.ndarray, gen_ap: np.ndarray, open_: np.ndarray
) -> dict:
    """Teeth of generated vs real frames [n] (`teeth_fraction`, NaN where not found) on the frames where the real
    mouth is open (`open_`): `teeth_ratio` (mean generated share / mean real share), `teeth_real`, and
    `teeth_ceiling`: the ratio the generated openings `gen_ap` allow, were each mouth to show the teeth real frames
    show at its opening (the real frames' mean share against `real_ap`, Gaussian-weighted over TEETH_BANDWIDTH),
    so a shortfall of the openings (the audio's) is told from one of the drawing."""
    if not open_.any():
        return {"teeth_ratio": float("nan"), "teeth_real": float("nan"), "teeth_ceiling": float("nan")}
    found = ~np.isnan(real_teeth) & ~np.isnan(real_ap)

    def expected(openings: np.ndarray) -> np.ndarray:  # real frames' mean teeth share at these openings
        w = np.exp(-0.5 * ((openings[:, None] - real_ap[None, found]) / TEETH_BANDWIDTH) ** 2)
        return (w @ real_teeth[found]) / np.maximum(w.sum(1), 1e-12)

    real = np.nanmean(real_teeth[open_])
    return {
        "teeth_ratio": float(np.nanmean(gen_teeth[open_]) / max(real, 1e-6)),
        "teeth_real": float(real),
        "teeth_ceiling": float(np.nanmean(expected(gen_ap[open_])) / max(np.nanmean(expected(real_ap[open_])), 1e-6)),
    }
