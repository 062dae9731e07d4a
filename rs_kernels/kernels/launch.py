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

from .. import varlen

# Rows per program. A program reads its block of x twice (scores, then Z^T x): the second read
# should hit L2, which favours small blocks; every block writes a C x D partial row, which favours
# large ones. RS_KERNELS_BLOCK_T (16, 32, 64, 128) overrides it for tuning; results depend on it
# bitwise (summation order), so it is fixed, not autotuned.
BLOCK_T = int(os.environ.get("RS_KERNELS_BLOCK_T", "32"))
if BLOCK_T not in (16, 32, 64, 128):
    raise ValueError(f"RS_KERNELS_BLOCK_T must be 16, 32, 64 or 128, got {BLOCK_T}")
# Warps per program. At 4 the backward kernels use all 255 registers and spill a little (see
# tests/sm90_compile_probe.py); RS_KERNELS_NUM_WARPS (2, 4, 8) lets a GPU session measure the
# alternatives. Like BLOCK_T it can change results bitwise, so it is fixed per process.
NUM_WARPS = int(os.environ.get("RS_KERNELS_NUM_WARPS", "4"))
if NUM_WARPS not in (2, 4, 8):
    raise ValueError(f"RS_KERNELS_NUM_WARPS must be 2, 4 or 8, got {NUM_WARPS}")
_BLOCK_TABLE = "_rs_block_table"  # attribute of an offsets tensor: its block table (see block_table)


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


def block_table(cu: Tensor, n_rows: int) -> tuple[Tensor, Tensor, int]:
    """(blk_vid, blk_cu, bound): the video of each T block, -1 past the last, and each video's blocks.

    sum_b ceil(T_b / bt) <= (N + B (bt - 1)) // bt = bound, known from shapes: the grid needs no
    host sync; the programs past the real blocks do nothing. Built once per offsets tensor and N and
    kept on it (varlen.keep): the ops of a step that share cu_seqlens, forward and backward, reuse it.
    """
    table = varlen.kept(cu, _BLOCK_TABLE, key=n_rows)
    if table is None:
        batch = cu.numel() - 1
        nblk = (cu[1:] - cu[:-1] + BLOCK_T - 1) // BLOCK_T
        blk_cu = torch.zeros(batch + 1, dtype=torch.int64, device=cu.device)
        blk_cu[1:] = nblk.cumsum(0)
        bound = max((n_rows + batch * (BLOCK_T - 1)) // BLOCK_T, 1)
        j = torch.arange(bound, dtype=torch.int64, device=cu.device)
        vid = torch.searchsorted(blk_cu[1:], j, right=True)
        table = varlen.keep(cu, _BLOCK_TABLE, (torch.where(vid < batch, vid, -1), blk_cu, bound), key=n_rows)
    return table
