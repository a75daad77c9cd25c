"""Where training runs: the torch device, its precision, and the processes of a `torchrun` data-parallel run."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

PRECISIONS = ("auto", "bf16", "fp32")  # train.precision: auto = bf16 where the hardware computes it natively


def best_device(local_rank: int = 0) -> torch.device:
    """CUDA (this process's GPU) if present, else MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware (a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of a `train.precision` (one of PRECISIONS) on `device`; None means plain fp32."""
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


@dataclass(frozen=True)
class Workers:
    """This process's place in a data-parallel run: rank 0 of 1 when not started by torchrun."""

    rank: int = 0
    world: int = 1

    @classmethod
    def start(cls, device_type: str) -> Workers:
        """Join the process group torchrun set up (gloo on CPU, nccl on CUDA), or run alone without torchrun."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        return cls(dist.get_rank(), world)

    def sum(self, value: float) -> float:
        """`value` summed over all processes."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def average_gradients(self, module: torch.nn.Module) -> None:
        """Average `module`'s gradients over all processes (for a module DistributedDataParallel does not wrap)."""
        if self.world == 1:
            return
        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world
