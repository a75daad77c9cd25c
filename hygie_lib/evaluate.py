"""Evaluation on held-out frames: generate each mouth from its own audio, paste it back, measure against reality.

Also with the audio shifted by `shift` frames: a model that listens gets clearly worse.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hygie_lib.blend import paste_mouth
from hygie_lib.crops import crop
from hygie_lib.dataset import mel_windows, pick_references, time_split
from hygie_lib.landmarks import LIP_LOOPS, FaceMesh, eye_centres, mouth_aperture
from hygie_lib.render import model_inputs, to_pixels
from hygie_lib.runtime import MouthModel
from hygie_lib.train import ssim
from hygie_lib.video import iter_frames

MAX_LAG = 10  # frames searched either way for the sync offset


def generate_crops(
    model: MouthModel, crops: np.ndarray, mask: np.ndarray, mel: np.ndarray, frames: np.ndarray, refs: np.ndarray,
    *, per_frame: int, batch: int = 32,
) -> np.ndarray:
    """Generated crops [len(frames), S, S, 3] uint8 for frames hearing mel around each frame (refs: reference frames)."""
    out = []
    for i in range(0, len(frames), batch):
        f = frames[i : i + batch]
        masked, ref = model_inputs(crops[f], crops[refs[i : i + batch]] if model.reference else None, mask)
        windows = mel_windows(mel, f, per_frame=per_frame, win=int(model.data["mel_win"]))[:, None].astype(np.float32)
        out.append(to_pixels(model(masked, windows, ref)))
    return np.concatenate(out)


def _tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 image [H, W, 3] -> float tensor [3, H, W] in [0, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


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


def video_apertures(video: str | os.PathLike, fps: float) -> np.ndarray:
    """Inner-lip aperture of every frame of a video, measured by FaceMesh (NaN where no face is found)."""
    with FaceMesh() as mesh:
        lms = [mesh(frame) for frame in iter_frames(video, fps)]
    return mouth_aperture(np.stack([np.full((478, 3), np.nan, np.float32) if lm is None else lm for lm in lms]))


def lip_distance(gen: np.ndarray, real: np.ndarray) -> np.ndarray:
    """LMD per frame: mean distance of the lip landmarks, in mouth widths (outer-lip width of the real frame)."""
    lips = np.concatenate(LIP_LOOPS)
    width = np.stack([np.ptp(real[:, loop, 0], axis=1) for loop in LIP_LOOPS]).max(0)
    # align on the eyes first, so a model is not charged for the head position it did not draw
    offset = np.mean(eye_centres(real), 0) - np.mean(eye_centres(gen), 0)
    return np.linalg.norm(gen[:, lips, :2] + offset[:, None] - real[:, lips, :2], axis=-1).mean(1) / width


def evaluate_clip(
    video: str | os.PathLike, model: MouthModel, prepared: dict, landmarks: np.ndarray, mel: np.ndarray, *,
    fps: float, per_frame: int, train_split: float, blend: str, shift: int, truth: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics dict and per-frame table for the validation block of a prepared training clip."""
    crops, boxes, face, mask = prepared["crops"], prepared["boxes"], prepared["face"], prepared["mask"]
    win = int(model.data["mel_win"])
    train_starts, _ = time_split(face, train_split=train_split, gap=win)
    first_val = int(round(len(face) * train_split)) + win
    frames = np.flatnonzero(face[first_val:]) + first_val
    refs = pick_references(frames, np.flatnonzero(face[: train_starts[-1] + 1]), win, np.random.default_rng(0))
    runs = {"": 0, "_shifted": shift}
    generated = {
        name: generate_crops(model, crops, mask, np.roll(mel, -lag * per_frame, axis=1) if lag else mel, frames, refs,
                             per_frame=per_frame)
        for name, lag in runs.items()
    }
    weight = mask.astype(np.float64)
    rows = {name: {"l1": [], "psnr": [], "ssim": [], "lm": []} for name in runs}
    meshes = {name: FaceMesh() for name in runs}
    position = {f: i for i, f in enumerate(frames)}
    bar = tqdm(total=len(frames), desc="evaluate", unit="frame", disable=not progress)
    for t, frame in enumerate(iter_frames(video, fps)):
        if t not in position:
            continue
        i = position[t]
        real = crops[t].astype(np.float64)
        for name in runs:
            pasted = paste_mouth(frame, generated[name][i], boxes[t], mask, mode=blend)
            back = crop(pasted, boxes[t], crops.shape[1])
            err = (back.astype(np.float64) - real) ** 2
            rows[name]["l1"].append(float((np.abs(back - real).mean(-1) * weight).sum() / weight.sum() / 255))
            mse = float((err.mean(-1) * weight).sum() / weight.sum())
            rows[name]["psnr"].append(10 * np.log10(255**2 / max(mse, 1e-6)))
            rows[name]["ssim"].append(float(ssim(_tensor(back), _tensor(crops[t]), torch.from_numpy(weight))))
            lm = meshes[name](pasted)
            rows[name]["lm"].append(np.full((478, 3), np.nan, np.float32) if lm is None else lm)
        bar.update()
    bar.close()
    for mesh in meshes.values():
        mesh.close()

    real_ap = mouth_aperture(landmarks[frames])
    table = pd.DataFrame({"frame": frames, "real_aperture": real_ap})
    metrics: dict[str, float] = {"frames": len(frames)}
    for name in runs:
        lms = np.stack(rows[name]["lm"])
        gen_ap = mouth_aperture(lms)
        table[f"gen_aperture{name}"] = gen_ap
        corr, offset = sync(gen_ap, real_ap)
        metrics.update({
            f"psnr_mouth{name}": float(np.mean(rows[name]["psnr"])),
            f"ssim_mouth{name}": float(np.mean(rows[name]["ssim"])),
            f"l1_mouth{name}": float(np.mean(rows[name]["l1"])),
            f"lmd{name}": float(np.nanmean(lip_distance(lms, landmarks[frames]))),
            f"aperture_corr{name}": corr,
            f"sync_offset{name}": offset,
            f"face_found{name}": float(np.mean(np.isfinite(gen_ap))),
        })
        if truth is not None:
            metrics[f"truth_corr{name}"] = lag_correlation(gen_ap, truth[frames], 0)
    if truth is not None:
        table["truth_openness"] = truth[frames]
        metrics["truth_corr_real"] = lag_correlation(real_ap, truth[frames], 0)  # the ceiling: real frames vs truth
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, table
