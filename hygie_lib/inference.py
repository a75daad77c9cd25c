"""Inference: a trained model run by PyTorch or, exported to ONNX, by ONNX Runtime, behind one `generate` call.

Render, evaluation and live sessions do the same three things for any model: `hear` the audio (one row per
output frame: its mouth shape for a shape model, its mel window for an audio model; `condition_stream` for audio
arriving in chunks), turn a batch of rows into `conditions` (shapes drawn at the template frames' poses), and
`generate` the new mouths.
"""

from __future__ import annotations

import base64
import io
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from hygie_lib.audio import Mel, MelStream, MelWindowStream, mel_windows
from hygie_lib.audio2shape import SPEECH_LEAD, ShapeModel, ShapeStream
from hygie_lib.checkpoint import DataInfo, load_checkpoint
from hygie_lib.crops import Crops
from hygie_lib.io import HygieError
from hygie_lib.model import HygieUNetLite
from hygie_lib.shape import sketches

BACKENDS = ("onnx", "torch")  # render.backend: ONNX Runtime (faster on CPU) or PyTorch


def export_onnx(model: HygieUNetLite, data: DataInfo, shapes: ShapeModel) -> bytes:
    """The model as ONNX bytes (batch axis dynamic); its config, data record, mask and shape model as JSON metadata."""
    import onnx

    dev = next(model.parameters()).device
    crop = torch.zeros(1, 3, model.img_size, model.img_size, device=dev)
    cond = torch.zeros(model.cond_shape(1), device=dev)
    inputs, names = (
        ((crop, cond, crop), ["crop", "cond", "ref"]) if model.reference else ((crop, cond), ["crop", "cond"])
    )
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated in favour of dynamo (needs onnxscript)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            inputs,
            buf,
            input_names=names,
            output_names=["out"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in [*names, "out"]},
        )
    proto = onnx.load_from_string(buf.getvalue())
    meta = {
        "config": model.config,
        "data": asdict(data),
        "mask": base64.b64encode(np.packbits(model.mask.cpu().numpy().astype(bool)).tobytes()).decode(),
        "shapes": {k: np.asarray(v).tolist() for k, v in shapes.arrays().items()},
    }
    onnx.helper.set_model_props(proto, {"hygiesync": json.dumps(meta)})
    return proto.SerializeToString()


class MouthModel:
    """A trained mouth model for inference: `hear` an audio, then `generate` mouths frame batch by frame batch.

    `data` says how its inputs must be made, `mask` [S, S] is the region it regenerates, `shapes` is the
    recording's shape model (audio -> mouth shape, A/V offset), `lead` the frames before speech its mouths may open
    (`ShapeStream`: more for a render, fewer for live, where each costs 40 ms of latency).
    """

    lead = SPEECH_LEAD  # (a class default: `from_library` makes models without __init__)

    def __init__(
        self, path: str | os.PathLike, backend: str = "onnx", threads: int | None = None, *, lead: int = SPEECH_LEAD
    ) -> None:
        """Load a checkpoint (.pt, run by `backend`), an exported .onnx, or a mouth library (.npz: the fast path,
        which draws nothing and renders with render.mouth retrieve only)."""
        self.lead = lead
        if backend not in BACKENDS:
            raise HygieError(f"render.backend: {backend!r} is not one of {', '.join(BACKENDS)}.")
        path = Path(path)
        threads = threads or os.cpu_count() or 1
        self.backend = backend
        if path.suffix == ".npz":  # a mouth library: the fast path, real mouths only (render.mouth retrieve)
            from hygie_lib.retrieve import MouthLibrary

            self._use_library(MouthLibrary.load(path))
            return
        if path.suffix == ".onnx":
            self.backend = "onnx"
            self._session_from(path, path.read_bytes() if path.is_file() else None, threads)
            return
        ckpt = load_checkpoint(path)
        self.config, self.data, self.shapes = ckpt.model.config, ckpt.data, ckpt.shapes
        self.mask = ckpt.model.mask.numpy().astype(np.uint8)
        if backend == "torch":
            torch.set_num_threads(threads)
            self._model = ckpt.model
        else:
            self._session_from(path, export_onnx(ckpt.model, self.data, self.shapes), threads)

    @classmethod
    def from_library(cls, library) -> MouthModel:
        """The fast path's model: a MouthLibrary's shape model and crop settings, drawing nothing (retrieve only)."""
        model = cls.__new__(cls)
        model._use_library(library)
        return model

    def _use_library(self, library) -> None:
        """Take the shape model, crop settings and mask of a MouthLibrary; there is no generator."""
        self.backend, self.config = "library", {"reference": False, "cond": "shape"}
        self.data, self.shapes, self.mask = library.data, library.model, library.mask.astype(np.uint8)

    def _session_from(self, path: Path, onnx_bytes: bytes | None, threads: int) -> None:
        """Open an ONNX Runtime session and read the model's metadata; a HygieError names an unusable file."""
        import onnxruntime as ort

        if onnx_bytes is None:
            raise HygieError(f"{path}: model not found. Export one with `hygie export-onnx`.")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads must not slow the encoder
        try:
            self._session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
            meta = json.loads(self._session.get_modelmeta().custom_metadata_map["hygiesync"])
            self.config, self.data = meta["config"], DataInfo.from_dict(meta["data"])
            self.shapes = ShapeModel.from_arrays(meta["shapes"])
            S = self.data.img_size
            self.mask = np.unpackbits(np.frombuffer(base64.b64decode(meta["mask"]), np.uint8))[: S * S].reshape(S, S)
        except Exception as e:  # any failure means the file is not a usable HygieSync ONNX model
            if onnx_bytes[:4] == b"PK\x03\x04":
                raise HygieError(f"{path}: is a PyTorch checkpoint, not ONNX. Name it {path.stem}.pt.") from e
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            raise HygieError(
                f"{path}: not a HygieSync ONNX model ({reason}). Export one with `hygie export-onnx`."
            ) from e
        self._inputs = [i.name for i in self._session.get_inputs()]

    @property
    def reference(self) -> bool:
        """Whether the model takes a reference crop."""
        return bool(self.config["reference"])

    @property
    def cond(self) -> str:
        """What the generator draws from: "shape" (two stages) or "audio" (one stage)."""
        return self.config["cond"]

    def check_crops(self, crops: Crops, video: str | os.PathLike) -> None:
        """Raise a HygieError if `crops` (of `video`) were not made as this model's training crops were."""
        d = self.data
        if not crops.fits(size=d.img_size, pad=d.mouth_pad, fps=d.fps, mask=self.mask):
            raise HygieError(
                f"{video}: its crops are {crops.size}px with MOUTH_PAD {crops.pad} at {crops.fps} fps but the model "
                f"was trained on {d.img_size}px crops with MOUTH_PAD {d.mouth_pad} at {d.fps} fps (or another mask). "
                "Prepare them with the model's params (`dvc repro`), or retrain."
            )
        if not crops.face.any():
            raise HygieError(f"{video}: no face was found in any frame, so there is no mouth to re-voice.")

    def check_mel(self, mel: Mel, path: str | os.PathLike) -> None:
        """Raise a HygieError naming `path` if `mel` was not made as this model's training mel was."""
        d = self.data
        made = (mel.sr, mel.n_fft, mel.n_mels, mel.per_frame, mel.fps)
        wanted = (d.sr, d.n_fft, d.n_mels, d.mel_per_frame, d.fps)
        if made != wanted:
            describe = "{} Hz, n_fft {}, {} mels, {} columns per frame at {} fps".format
            raise HygieError(
                f"{path}: made at {describe(*made)}, but the model hears {describe(*wanted)}. "
                "Prepare it with the model's params (`dvc repro`), or retrain."
            )

    def mouth_shapes(self, mel: Mel, *, offset: int = 0) -> np.ndarray:
        """The mouth shape [n_frames, K] the audio asks for at every frame (the recording's shape model)."""
        return self.shapes.predictor.predict(mel.mel, mel.per_frame, offset=offset, lead=self.lead)

    def hear(self, mel: Mel, *, offset: int = 0) -> np.ndarray:
        """What the model hears of a whole audio, one row per output frame (the rows of `condition_stream`): its
        mouth shape [n, K], or its mel window [n, n_mels, win]. `offset`: the A/V offset of the training recording
        when the audio is that recording's own (evaluation); new audio is heard as it is (0)."""
        if self.cond == "shape":
            return self.mouth_shapes(mel, offset=offset)
        d = self.data
        return mel_windows(mel.mel, np.arange(mel.n_frames) + offset, per_frame=d.mel_per_frame, win=d.mel_win)

    def mel_stream(self) -> MelStream:
        """The log-mel of audio arriving in chunks, made as the model's training mel was."""
        d = self.data
        return MelStream(d.sr, fps=d.fps, n_mels=d.n_mels, per_frame=d.mel_per_frame, n_fft=d.n_fft)

    def condition_stream(self) -> ShapeStream | MelWindowStream:
        """What the model hears of audio arriving in chunks: mel columns in, one row per frame out (its mouth shape,
        or its mel window), the same rows as `hear` gives for the whole audio."""
        if self.cond == "shape":
            return ShapeStream(self.shapes.predictor, self.data.mel_per_frame, self.lead)
        return MelWindowStream(self.data.mel_per_frame, self.data.mel_win)

    def conditions(self, rows: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """The model's condition input for rows that it heard (`hear`, `condition_stream`), a shape drawn at the pose
        of `landmarks` in the crop of `boxes` ([B, 3, S, S]) or a mel window ([B, 1, n_mels, win])."""
        if self.cond == "shape":
            return sketches(self.shapes.space, rows, landmarks, boxes, self.data.img_size)
        return rows[:, None]

    @property
    def lookahead(self) -> float:
        """Seconds of audio past a frame's time that its mouth depends on: the least latency of a live stream."""
        d = self.data
        if self.cond == "shape":  # the last column of the last frame the shape hears
            cols = (self.condition_stream().lookahead + 1) * d.mel_per_frame - 1
        else:  # the last column of the mel window
            cols = d.mel_win - d.mel_win // 2 - 1
        return cols / (d.fps * d.mel_per_frame) + d.n_fft // 2 / d.sr

    def generate(self, crops: np.ndarray, refs: np.ndarray | None, cond: np.ndarray) -> np.ndarray:
        """Crops [B, S, S, 3] uint8, reference crops (same, or None) and conditions (`conditions`) -> new crops."""
        if self.backend == "library":
            raise HygieError(
                "a mouth library draws no mouths: render it with render.mouth retrieve, or give models/best.pt."
            )
        x = [_to_model(crops), np.ascontiguousarray(cond, dtype=np.float32)]
        if self.reference:
            x.append(_to_model(refs))
        if self.backend == "torch":
            with torch.inference_mode():
                out = self._model(*map(torch.from_numpy, x)).numpy()
        else:
            out = self._session.run(None, dict(zip(self._inputs, x)))[0]
        return (out.clip(0.0, 1.0).transpose(0, 2, 3, 1) * 255.0 + 0.5).astype(np.uint8)


def _to_model(images: np.ndarray) -> np.ndarray:
    """uint8 images [B, S, S, 3] -> float32 [B, 3, S, S] in [0, 1]."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
