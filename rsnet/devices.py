"""Which device a command runs on: a leaf shared by training, the commands that run a trained
model and feature extraction, so ``--device`` means the same everywhere."""
from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(device: str) -> torch.device:
    """``auto``: the GPU where there is one, else the CPU; otherwise a torch device name."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device!r}: not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device} asked for CUDA, but no CUDA device is available "
                        f"(--device auto picks what there is)")
    return resolved
