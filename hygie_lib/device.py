"""The torch device to run on: CUDA, else Apple MPS, else CPU."""

from __future__ import annotations

import torch


def best_device() -> torch.device:
    """CUDA if present, else MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
