"""Launch settings and buffers of the Triton path, importable without Triton (the ops' fake kernels
and host-side algebra use them).

Every buffer a launcher hands to a kernel comes from :func:`empty` (tests fill it with NaN, so an
element a kernel forgets to write fails them).
"""
from __future__ import annotations

import contextlib
import os

import torch
from torch import Tensor

# Rows per program (the blocks of ``Varlen.block_table``). A program reads its block of x twice
# (scores, then Z^T x): the second read should hit L2, which favours small blocks; every block
# writes a C x D partial row, which favours large ones. RS_KERNELS_BLOCK_T (16, 32, 64, 128) overrides it for tuning; results depend on it
# bitwise (summation order), so it is fixed, not autotuned.
BLOCK_T = int(os.environ.get("RS_KERNELS_BLOCK_T", "32"))
if BLOCK_T not in (16, 32, 64, 128):
    raise ValueError(f"RS_KERNELS_BLOCK_T must be 16, 32, 64 or 128, got {BLOCK_T}")
# Warps per program. At 4 the backward kernels use all 255 registers and spill a little (see
# tests/kernels/sm90_compile_probe.py); RS_KERNELS_NUM_WARPS (2, 4, 8) lets a GPU session measure the
# alternatives. Like BLOCK_T it can change results bitwise, so it is fixed per process.
NUM_WARPS = int(os.environ.get("RS_KERNELS_NUM_WARPS", "4"))
if NUM_WARPS not in (2, 4, 8):
    raise ValueError(f"RS_KERNELS_NUM_WARPS must be 2, 4 or 8, got {NUM_WARPS}")


def empty(shape, dtype: torch.dtype, device) -> Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation / statistics dtype: fp64 for fp64 inputs, fp32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def device_ctx(t: Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_launchable(x: Tensor, op: str) -> None:
    if not x.is_cuda and not interpreting():
        raise RuntimeError(
            f"{op}: the Triton kernels need CUDA tensors; on CPU set TRITON_INTERPRET=1 before importing "
            "rs_kernels, or use impl='reference'")

