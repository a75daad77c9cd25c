"""Inference backends with one call: a trained model run by PyTorch or, exported to ONNX, by ONNX Runtime."""
from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from hygie_lib.io import HygieError
from hygie_lib.model import HygieUNetLite
from hygie_lib.train import load_checkpoint

BACKENDS = ("onnx", "torch")


def export_onnx(model: HygieUNetLite, meta: dict) -> bytes:
    """The model as ONNX bytes (batch axis dynamic), with `meta` (config and data info) stored as JSON metadata."""
    import onnx

    S, dev = model.img_size, next(model.parameters()).device
    masked = torch.zeros(1, 3, S, S, device=dev)
    mel = torch.zeros(1, 1, model.n_mels, model.mel_win, device=dev)
    inputs, names = ((masked, mel, masked), ["masked", "mel", "ref"]) if model.reference else ((masked, mel), ["masked", "mel"])
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), inputs, buf, input_names=names, output_names=["crop"], opset_version=17, dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in [*names, "crop"]},
        )
    proto = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(proto, {"hygiesync": json.dumps(meta)})
    return proto.SerializeToString()


class MouthModel:
    """Callable (masked [B,3,S,S], mel [B,1,M,W], ref [B,3,S,S]) float32 arrays -> crops [B,3,S,S] in [0, 1].

    `config` holds the model's constructor kwargs and `data` how its training crops and mel were made.
    """

    def __init__(self, path: str | os.PathLike, backend: str = "onnx", threads: int | None = None) -> None:
        if backend not in BACKENDS:
            raise HygieError(f"render.backend must be one of {BACKENDS}, got {backend!r}.")
        path = Path(path)
        threads = threads or os.cpu_count() or 1
        self.backend = backend
        if path.suffix == ".onnx":
            self.backend = "onnx"
            self._session_from(path, path.read_bytes() if path.is_file() else None, threads)
            return
        model, ckpt = load_checkpoint(path)
        self.config, self.data = ckpt["config"], ckpt["data"]
        if backend == "torch":
            torch.set_num_threads(threads)
            self._model = model
        else:
            self._session_from(path, export_onnx(model, {"config": self.config, "data": self.data}), threads)

    def _session_from(self, path: Path, onnx_bytes: bytes | None, threads: int) -> None:
        """Open an ONNX Runtime session and read the model's metadata; a HygieError names an unusable file."""
        import onnxruntime as ort

        if onnx_bytes is None:
            raise HygieError(f"{path}: model not found. Export one with `hygie export-onnx`.")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads must not steal the encoder's CPU
        try:
            self._session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
            meta = json.loads(self._session.get_modelmeta().custom_metadata_map["hygiesync"])
        except Exception as e:  # noqa: BLE001 - any failure means the file is not a usable HygieSync ONNX model
            raise HygieError(f"{path}: not a readable HygieSync ONNX model ({type(e).__name__}: {e}). Export it again.") from e
        self.config, self.data = meta["config"], meta["data"]
        self._inputs = [i.name for i in self._session.get_inputs()]

    @property
    def reference(self) -> bool:
        """Whether the model takes a reference crop."""
        return bool(self.config["reference"])

    def __call__(self, masked: np.ndarray, mel: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
        if self.backend == "torch":
            with torch.inference_mode():
                args = [torch.from_numpy(a) for a in (masked, mel, ref) if a is not None]
                return self._model(*args).numpy()
        feeds = dict(zip(self._inputs, [masked, mel, ref]))
        return self._session.run(None, feeds)[0]
