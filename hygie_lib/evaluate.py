"""Evaluation of a trained model on its recording's held-out block, and of the rendered product.

`evaluate_heldout`: the held-out frames regenerated from their own audio and pasted back, measured against reality
(also with the audio shifted: a model that listens gets clearly worse). `cross_check`: the held-out block played
backwards as the template, re-voiced with its own audio forwards: does the mouth follow the audio rather than the
template? `evaluate_render`: the render against ground truth (the synthetic speaker) and the sync expert's verdict.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hygie_lib.audio import Mel, load_audio, write_wav
from hygie_lib.audio2shape import silent_frames
from hygie_lib.blend import paste_mouth
from hygie_lib.crops import Crops, crop
from hygie_lib.inference import MouthModel
from hygie_lib.io import atomic_path, fingerprint
from hygie_lib.landmarks import FaceMesh, detect_video
from hygie_lib.metrics import (
    closed_level,
    lag_correlation,
    lip_distance,
    lip_sharpness,
    mouth_aperture,
    sharpness,
    ssim,
    sync,
    teeth_figures,
    teeth_fraction,
)
from hygie_lib.render import LOOP_JPEG, render
from hygie_lib.retrieve import MouthLibrary
from hygie_lib.split import Split, heldout_gap, pick_references, reference_gap, time_split
from hygie_lib.syncnet import SyncExpert, clip_starts, image_mouths, judge_frames, judge_video
from hygie_lib.video import VideoWriter, iter_frames


def corr_gap_interval(
    a: np.ndarray, b: np.ndarray, real: np.ndarray, *, block: int = 10, draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of corr(a, real) - corr(b, real) over frames [n] drawn again in runs of `block` consecutive ones
    (a moving-block bootstrap, as neighbouring frames are not independent): is a gap between two renders signal?"""
    idx = np.flatnonzero(np.isfinite(a) & np.isfinite(b) & np.isfinite(real))
    block = min(block, len(idx))  # a short table: fewer, shorter runs
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(idx) - block + 1, (draws, -(-len(idx) // block)))
    gaps = []
    for s in starts:
        i = idx[(s[:, None] + np.arange(block)).ravel()[: len(idx)]]
        gaps.append(np.corrcoef(a[i], real[i])[0, 1] - np.corrcoef(b[i], real[i])[0, 1])
    lo, hi = np.percentile(gaps, [2.5, 97.5])
    return float(lo), float(hi)


def generate_frames(
    model: MouthModel,
    crops: Crops,
    heard: np.ndarray,
    frames: np.ndarray,
    refs: np.ndarray,
    batch: int = 32,
) -> np.ndarray:
    """Crops [len(frames), S, S, 3] uint8 of the clip's `frames` regenerated from what the model `heard` (`hear`)."""
    out = []
    for i in range(0, len(frames), batch):
        f = frames[i : i + batch]
        ref = crops.crops[refs[i : i + batch]] if model.reference else None
        out.append(model.generate(crops.crops[f], ref, model.conditions(heard[f], crops.landmarks[f], crops.boxes[f])))
    return np.concatenate(out)


def _tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 image [H, W, 3] -> float tensor [3, H, W] in [0, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


def evaluate_heldout(
    video: str | os.PathLike,
    model: MouthModel,
    crops: Crops,
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
    d, offset, landmarks = model.data, model.shapes.offset, crops.landmarks
    model.check_crops(crops, video)
    split = heldout_split(model, crops, train_split)
    frames = split.val_frames
    refs = pick_references(
        frames, split.train_frames, reference_gap(d.mel_win, d.mel_per_frame), np.random.default_rng(0)
    )
    runs = {"": 0, "_shifted": shift}
    generated = {
        name: generate_frames(model, crops, model.hear(mel, offset=offset + lag), frames, refs)
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


def heldout_split(model: MouthModel, crops: Crops, train_split: float) -> Split:
    """The split the model was trained with: the held-out block starts after a gap as wide as the audio it heard."""
    gap = heldout_gap(model.data.mel_win, model.data.mel_per_frame, model.shapes.offset)
    return time_split(crops.face, train_split=train_split, gap=gap)


def evaluate_render(
    rendered: str | os.PathLike,
    fps: float,
    *,
    truth: np.ndarray | None = None,
    expert: SyncExpert | None = None,
    mel: Mel | None = None,
) -> dict[str, float]:
    """The product itself, the rendered video: its mouth (FaceMesh aperture) against the new audio's per-frame
    `truth` (the synthetic speaker), and the sync expert's verdict on it with the new audio's `mel`."""
    landmarks = detect_video(rendered, fps, progress=False)
    metrics = {}
    if truth is not None:
        ap = mouth_aperture(landmarks)
        n = min(len(ap), len(truth))
        metrics["render_truth_corr"], metrics["render_sync_offset"] = sync(ap[:n], truth[:n])
    if expert is not None and mel is not None:
        verdict = judge_video(expert, rendered, mel.mel, fps, landmarks=landmarks)
        metrics["render_sync_confidence"], metrics["render_sync_lag"] = verdict["confidence"], verdict["offset"]
    return _rounded(metrics)


def _rounded(metrics: dict) -> dict:
    """Floats rounded to 4 decimals, for a readable eval.json."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def cross_check(
    video: str | os.PathLike,
    model: MouthModel,
    crops: Crops,
    mel: Mel,
    audio: np.ndarray,
    out_video: str | os.PathLike,
    *,
    train_split: float,
    blend: str,
    shift: int,
    expert: SyncExpert | None = None,
    mouth: str = "generate",
    library: MouthLibrary | None = None,
    max_frames: int = 500,
    progress: bool = True,
) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """The product's own test, on the held-out block of the training recording: no ground truth needed.

    The block's frames played backwards become the template (its own jaw moves, with other speech), and its
    audio (`audio`: the recording's, mono at `mel.sr`) plays forwards; the render is measured against the real
    forward frames. Returns metrics (`cross_corr`: generated vs real aperture at lag 0, `cross_lag`: the best
    lag in +-MAX_LAG, `leak_corr`: generated vs the template's own aperture, each also with the audio shifted by
    `shift` frames; `open_in_silence` of the real and the generated frames; with the sync `expert`, its confidence
    and lag for the real and the generated frames), a per-frame table and a contact sheet (rows: real |
    generated | template mouths), and writes `out_video`: real | generated | template, side by side, with audio.
    """
    model.check_crops(crops, video)
    split = heldout_split(model, crops, train_split)
    block = np.arange(split.val_frames[0], split.val_frames[-1] + 1)[:max_frames]
    rev, d = block[::-1], model.data
    jpegs = [
        cv2.imencode(".jpg", f, LOOP_JPEG)[1] for f in islice(iter_frames(video, crops.fps), block[0], block[-1] + 1)
    ]
    real_ap = mouth_aperture(crops.landmarks[block])
    closed = closed_level(mouth_aperture(crops.landmarks[split.train_frames]))
    table = pd.DataFrame({"k": np.arange(len(block)), "frame": block, "real_aperture": real_ap})
    table["template_aperture"] = real_ap[::-1]
    metrics: dict = {"cross_frames": len(block)}
    with tempfile.TemporaryDirectory(prefix="hygie-cross-") as tmp:
        work = Path(tmp)
        template_video = work / "template.mp4"
        with VideoWriter(template_video, crops.fps, *_size(jpegs[0]), crf=10) as w:
            for jpeg in jpegs[::-1]:
                w.write(_decode(jpeg))
        template = replace(
            crops,
            crops=crops.crops[rev],
            boxes=crops.boxes[rev],
            face=crops.face[rev],
            landmarks=crops.landmarks[rev],
            source=fingerprint(template_video),
        )
        per_frame_samples = mel.sr / crops.fps
        for name, start in {"": block[0], "_shifted": block[0] - shift}.items():
            first = round((start + model.shapes.offset) * per_frame_samples)  # the audio of frame `start`
            length = round(len(block) * per_frame_samples)
            segment = np.pad(audio, (length, length))[first + length : first + 2 * length]
            wav = work / f"audio{name}.wav"
            write_wav(wav, segment, mel.sr)
            seg = Mel.of(segment, mel.sr, fps=crops.fps, n_mels=d.n_mels, per_frame=d.mel_per_frame, n_fft=d.n_fft)
            rendered = work / f"cross{name}.mp4"
            render(
                model,
                template,
                template_video,
                seg,
                wav,
                rendered,
                blend=blend,
                mouth=mouth,
                library=library,
                match_level=False,  # the recording's own audio: its level is the training's
                progress=progress,
            )
            gen_lm = detect_video(rendered, crops.fps, progress=False)[: len(block)]
            gen_ap = mouth_aperture(gen_lm)
            table[f"gen_aperture{name}"] = gen_ap
            corr, lag = sync(gen_ap, real_ap)
            metrics[f"cross_corr{name}"], metrics[f"cross_lag{name}"] = corr, lag
            metrics[f"leak_corr{name}"] = lag_correlation(gen_ap, real_ap[::-1], 0)
            if name == "" and expert is not None:
                metrics.update(_judge_cross(expert, crops, block, template, rendered, seg))
            if name == "":
                real_frames = (_decode(j) for j in jpegs)
                appearance, real_teeth, gen_teeth = _appearance(
                    real_frames, crops.landmarks[block], iter_frames(rendered, crops.fps), gen_lm, template
                )
                real_open = real_ap > closed
                table["real_open"], table["real_teeth"], table["gen_teeth"] = real_open, real_teeth, gen_teeth
                metrics.update(appearance)
                metrics.update(teeth_figures(real_teeth, gen_teeth, real_ap, gen_ap, real_open))
                silent = silent_frames(seg.mel, seg.per_frame, model.shapes.predictor.loud)[: len(block)]
                table["silent"] = silent
                metrics["silent_frames"] = int(silent.sum())
                metrics["open_in_silence_real"] = float(np.mean(real_open[silent])) if silent.any() else 0.0
                metrics["open_in_silence"] = float(np.mean(gen_ap[silent] > closed)) if silent.any() else 0.0
                sheet = contact_sheet(crops, block, template, rendered)
                side_by_side(jpegs, rendered, template_video, wav, out_video, fps=crops.fps, sr=mel.sr)
    return _rounded(metrics), table, sheet


def _appearance(
    real: Iterable[np.ndarray],
    real_lm: np.ndarray,
    generated: Iterable[np.ndarray],
    gen_lm: np.ndarray,
    template: Crops,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """How real the generated mouths look next to the real ones: `sharpness_ratio` (mean high-frequency energy in
    the mask, in frame pixels, generated / real; 1 = as sharp) and `lip_sharpness_ratio` (the same on the lips
    alone), with the share of teeth pixels inside the inner lips of each real and generated frame (`teeth_figures`)."""
    sharp_real, sharp_gen, lips_real, lips_gen, teeth_real, teeth_gen = [], [], [], [], [], []
    # real frame k is the template's frame n-1-k (the template plays the block backwards); g was drawn into frame k
    frames = zip(real, generated, template.boxes[::-1], template.boxes)
    for k, (r, g, real_box, gen_box) in enumerate(frames):
        sharp_real.append(sharpness(r, real_box, template.mask))
        sharp_gen.append(sharpness(g, gen_box, template.mask))
        lips_real.append(lip_sharpness(r, real_lm[k]))
        lips_gen.append(lip_sharpness(g, gen_lm[k]))
        teeth_real.append(teeth_fraction(r, real_lm[k]))
        teeth_gen.append(teeth_fraction(g, gen_lm[k]))
    ratios = {
        "sharpness_ratio": float(np.mean(sharp_gen) / max(np.mean(sharp_real), 1e-6)),
        "lip_sharpness_ratio": float(np.nanmean(lips_gen) / max(np.nanmean(lips_real), 1e-6)),
    }
    return ratios, np.array(teeth_real), np.array(teeth_gen)


def _judge_cross(
    expert: SyncExpert, crops: Crops, block: np.ndarray, template: Crops, rendered: Path, mel: Mel
) -> dict:
    """The sync expert on a cross check: the generated frames, and the real ones, against the block's audio."""
    generated = judge_frames(expert, iter_frames(rendered, crops.fps), template.boxes, template.face, mel.mel)
    starts = clip_starts(crops.face[block], np.arange(len(block)))
    real = expert.score(image_mouths(crops.crops[block], crops.mask), mel.mel, starts)
    return {
        "sync_confidence": generated["confidence"],
        "sync_lag": generated["offset"],
        "sync_confidence_real": real["confidence"],
        "sync_lag_real": real["offset"],
    }


def contact_sheet(crops: Crops, block: np.ndarray, template: Crops, rendered: Path, columns: int = 8) -> np.ndarray:
    """Rows real | generated | template: the mouths of `columns` moments of a cross check, RGB uint8."""
    ks = np.linspace(0, len(block) - 1, columns).round().astype(int)
    drawn = {
        k: crop(f, template.boxes[k], crops.size) for k, f in enumerate(iter_frames(rendered, crops.fps)) if k in ks
    }
    rows = [crops.crops[block[ks]], np.stack([drawn[k] for k in ks]), template.crops[ks]]
    return np.vstack([np.hstack(list(r)) for r in rows])


def side_by_side(
    real: list[np.ndarray],
    rendered: Path,
    template: Path,
    audio: Path,
    out: str | os.PathLike,
    *,
    fps: float,
    sr: int,
    height: int = 360,
) -> None:
    """Write `out`: real (JPEG frames) | rendered | template videos side by side, each `height` px high, with audio."""
    w, h = _size(real[0])
    width = 2 * round(w * height / h / 2)
    streams = zip(map(_decode, real), iter_frames(rendered, fps), iter_frames(template, fps))
    with (
        atomic_path(out) as tmp,
        VideoWriter(tmp, fps, 3 * width, height, audio=load_audio(audio, sr), sr=sr) as writer,
    ):
        for frames in streams:
            writer.write(np.hstack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]))


def _decode(jpeg: np.ndarray) -> np.ndarray:
    """RGB frame of a JPEG made by `cv2.imencode` from an RGB array (channel order kept)."""
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def _size(jpeg: np.ndarray) -> tuple[int, int]:
    """(width, height) of an encoded frame."""
    h, w = _decode(jpeg).shape[:2]
    return w, h
