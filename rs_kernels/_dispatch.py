"""Which implementation an op runs: ``auto`` (CUDA -> Triton, CPU -> reference), ``triton``,
``reference`` or ``padded`` (batched PyTorch over padded videos, the benchmarks' baseline).

The choice comes from the op's ``impl`` argument, else from ``RS_KERNELS_IMPL``. Forcing
``triton`` on CPU tensors is how CI runs the kernels under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import os

from torch import Tensor

IMPLS = ("auto", "triton", "reference", "padded")


def resolve_impl(impl: str | None, x: Tensor) -> str:
    chosen = impl or os.environ.get("RS_KERNELS_IMPL", "auto")
    if chosen not in IMPLS:
        raise ValueError(f"unknown rs_kernels implementation {chosen!r}; expected one of {IMPLS}")
    if chosen == "auto":
        return "triton" if x.is_cuda else "reference"
    return chosen
