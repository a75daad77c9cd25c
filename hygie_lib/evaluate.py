"""Evaluation: the held-out block regenerated from its own audio and measured against reality, and the rendered product.

`evaluate_heldout` also runs with the audio shifted by `shift` frames: a model that listens gets clearly worse.
`evaluate_render` measures the mouth of a rendered video against per-frame ground truth (the synthetic speaker).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hygie_lib.audio import Mel, mel_windows
from hygie_lib.blend import paste_mouth
from hygie_lib.crops import Crops, crop
from hygie_lib.inference import MouthModel
from hygie_lib.landmarks import FaceMesh
from hygie_lib.metrics import lag_correlation, lip_distance, mouth_aperture, ssim, sync
from hygie_lib.split import audio_span, pick_references, reference_gap, time_split
from hygie_lib.video import iter_frames


def generate_frames(
    model: MouthModel,
    crops: Crops,
    mel: np.ndarray,
    frames: np.ndarray,
    refs: np.ndarray,
    *,
    per_frame: int,
    batch: int = 32,
) -> np.ndarray:
    """Crops [len(frames), S, S, 3] uint8 of `frames` regenerated hearing `mel` [n_mels, C], with references `refs`."""
    out = []
    for i in range(0, len(frames), batch):
        f = frames[i : i + batch]
        ref = crops.crops[refs[i : i + batch]] if model.reference else None
        out.append(
            model.generate(crops.crops[f], ref, mel_windows(mel, f, per_frame=per_frame, win=model.data.mel_win))
        )
    return np.concatenate(out)


def _tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 image [H, W, 3] -> float tensor [3, H, W] in [0, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


def video_apertures(video: str | os.PathLike, fps: float) -> np.ndarray:
    """Inner-lip aperture of every frame of a video, measured by FaceMesh (NaN where no face is found)."""
    with FaceMesh() as mesh:
        return mouth_aperture(np.stack([mesh(frame) for frame in iter_frames(video, fps)]))


def evaluate_heldout(
    video: str | os.PathLike,
    model: MouthModel,
    crops: Crops,
    landmarks: np.ndarray,
    mel: Mel,
    *,
    train_split: float,
    blend: str,
    shift: int,
    truth: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics and a per-frame table for a training clip's validation block, its mouths regenerated and pasted back.

    Each metric also comes with the audio shifted by `shift` frames (suffix `_shifted`); with `truth` (per-frame
    ground-truth openness of the synthetic speaker) also the correlation of the generated aperture with it.
    """
    d = model.data
    model.check_crops(crops, video)
    split = time_split(crops.face, train_split=train_split, gap=audio_span(d.mel_win, d.mel_per_frame))
    frames = split.val_frames
    refs = pick_references(
        frames, split.train_frames, reference_gap(d.mel_win, d.mel_per_frame), np.random.default_rng(0)
    )
    runs = {"": 0, "_shifted": shift}
    generated = {
        name: generate_frames(
            model, crops, np.roll(mel.mel, -lag * mel.per_frame, axis=1), frames, refs, per_frame=mel.per_frame
        )
        for name, lag in runs.items()
    }
    weight = model.mask.astype(np.float64)
    rows = {name: {"l1": [], "psnr": [], "ssim": [], "lm": []} for name in runs}
    meshes = {name: FaceMesh() for name in runs}
    position = {f: i for i, f in enumerate(frames)}
    bar = tqdm(total=len(frames), desc="evaluate", unit="frame", disable=not progress)
    for t, frame in enumerate(iter_frames(video, crops.fps)):
        if t not in position:
            continue
        i = position[t]
        real = crops.crops[t].astype(np.float64)
        for name in runs:
            pasted = paste_mouth(frame, generated[name][i], crops.boxes[t], model.mask, mode=blend)
            back = crop(pasted, crops.boxes[t], crops.size)
            rows[name]["l1"].append(float((np.abs(back - real).mean(-1) * weight).sum() / weight.sum() / 255))
            mse = float((((back - real) ** 2).mean(-1) * weight).sum() / weight.sum())
            rows[name]["psnr"].append(10 * np.log10(255**2 / max(mse, 1e-6)))
            rows[name]["ssim"].append(float(ssim(_tensor(back), _tensor(crops.crops[t]), torch.from_numpy(weight))))
            rows[name]["lm"].append(meshes[name](pasted))
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
        metrics.update(
            {
                f"psnr_mouth{name}": float(np.mean(rows[name]["psnr"])),
                f"ssim_mouth{name}": float(np.mean(rows[name]["ssim"])),
                f"l1_mouth{name}": float(np.mean(rows[name]["l1"])),
                f"lmd{name}": float(np.nanmean(lip_distance(lms, landmarks[frames]))),
                f"aperture_corr{name}": corr,
                f"sync_offset{name}": offset,
                f"face_found{name}": float(np.mean(np.isfinite(gen_ap))),
            }
        )
        if truth is not None:
            metrics[f"truth_corr{name}"] = lag_correlation(gen_ap, truth[frames], 0)
    if truth is not None:
        table["truth_openness"] = truth[frames]
        metrics["truth_corr_real"] = lag_correlation(real_ap, truth[frames], 0)  # the ceiling: real frames vs truth
    return _rounded(metrics), table


def evaluate_render(rendered: str | os.PathLike, fps: float, truth: np.ndarray) -> dict[str, float]:
    """The product itself: the rendered video's mouth (FaceMesh aperture) against the new audio's per-frame truth."""
    ap = video_apertures(rendered, fps)
    n = min(len(ap), len(truth))
    corr, offset = sync(ap[:n], truth[:n])
    return _rounded({"render_truth_corr": corr, "render_sync_offset": offset})


def _rounded(metrics: dict) -> dict:
    """Floats rounded to 4 decimals, for a readable eval.json."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
