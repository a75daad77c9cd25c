"""Model checkpoints: the weights, the model's config, the one record of how its inputs were made (`DataInfo`) and
the recording's shape model (audio -> mouth shape, A/V offset), so one file renders.

A checkpoint is plain data (dicts, lists, numbers, tensors), so it loads with torch.load(weights_only=True):
    {"config": model.config, "data": asdict(DataInfo), "shapes": ShapeModel.arrays(), "state_dict": ..., "train": {}}
`train` says how training went (the step of the best weights); inference ignores it.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from hygie_lib.audio import Mel
from hygie_lib.audio2shape import ShapeModel
from hygie_lib.crops import Crops
from hygie_lib.io import HygieError, atomic_path
from hygie_lib.model import HygieUNetLite


@dataclass(frozen=True)
class DataInfo:
    """How a model's training crops and mel were made, read from the prepared files themselves; render must match it."""

    img_size: int
    mouth_pad: float
    ema_alpha: float
    fps: float
    sr: int
    n_fft: int
    n_mels: int
    mel_per_frame: int
    mel_win: int  # mel columns the model hears per frame (a train param: how the model reads the mel)

    @classmethod
    def of(cls, crops: Crops, mel: Mel, *, mel_win: int) -> DataInfo:
        """The record of a training clip's prepared crops and mel; a HygieError when they disagree on the frame rate."""
        if abs(crops.fps - mel.fps) > 1e-6:
            raise HygieError(f"the crops were made at {crops.fps} fps and the mel at {mel.fps} fps; rerun `dvc repro`.")
        return cls(
            img_size=crops.size,
            mouth_pad=crops.pad,
            ema_alpha=crops.alpha,
            fps=crops.fps,
            sr=mel.sr,
            n_fft=mel.n_fft,
            n_mels=mel.n_mels,
            mel_per_frame=mel.per_frame,
            mel_win=mel_win,
        )

    @classmethod
    def from_dict(cls, d: dict) -> DataInfo:
        """From a checkpoint's or an ONNX file's `data` entry."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def build_model(config: dict, data: DataInfo) -> HygieUNetLite:
    """An untrained model of `config` (widths, emb, reference) for inputs made as `data` says; a placeholder mask."""
    return HygieUNetLite(
        mask=torch.zeros(data.img_size, data.img_size), n_mels=data.n_mels, mel_win=data.mel_win, **config
    )


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), how its inputs were made, its shape model, how training went."""

    model: HygieUNetLite
    data: DataInfo
    shapes: ShapeModel
    train: dict


def save_checkpoint(
    path: str | os.PathLike, model: HygieUNetLite, data: DataInfo, shapes: ShapeModel, train: dict | None = None
) -> None:
    """Write a checkpoint atomically (weights, config, data record, shape model, and optionally how training went)."""
    arrays = {k: torch.from_numpy(np.array(v)) for k, v in shapes.arrays().items()}
    state = {"config": model.config, "data": asdict(data), "shapes": arrays, "state_dict": model.state_dict()}
    save_state(path, {**state, "train": train or {}})


def save_state(path: str | os.PathLike, state: dict) -> None:
    """torch.save plain data atomically, with the same bytes for the same data (not named after the temp file)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> Checkpoint:
    """The checkpoint at `path`; a HygieError names a missing or unusable file."""
    path = Path(path)
    if not path.is_file():
        raise HygieError(f"{path}: model not found. Train one with `dvc repro train`.")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        if _is_onnx(path):
            raise HygieError(f"{path}: is an ONNX model, not a checkpoint. Name it {path.with_suffix('.onnx').name}.")
        raise HygieError(
            f"{path}: not a HygieSync model (not a PyTorch checkpoint at all). Give models/best.pt from "
            "`dvc repro train`, or an .onnx file from `hygie export-onnx`."
        )
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        data = DataInfo.from_dict(ckpt["data"])
        model = build_model(ckpt["config"], data).to(device)
        model.load_state_dict(ckpt["state_dict"])
        shapes = ShapeModel.from_arrays({k: v.numpy() for k, v in ckpt["shapes"].items()})
    except Exception as e:  # any failure here means the file is not a usable checkpoint
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        raise HygieError(
            f"{path}: a PyTorch file, but not a HygieSync model of this version ({reason}). "
            "Retrain it with `dvc repro train`."
        ) from e
    return Checkpoint(model.eval(), data, shapes, ckpt["train"])


def _is_onnx(path: Path) -> bool:
    """Whether the file parses as an ONNX model with a graph."""
    import onnx

    try:
        return len(onnx.load(str(path), load_external_data=False).graph.node) > 0
    except Exception:  # noqa: BLE001 - anything unparsable is simply not ONNX
        return False
