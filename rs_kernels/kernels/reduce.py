"""The fixed-order segmented sum: per-block partial rows -> per-video rows (deterministic, no atomics)."""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from . import launch
from .common import tl_dtype

BLOCK_R = 1024  # columns per program


@triton.jit
def _segment_reduce_kernel(part_ptr, out_ptr, blk_cu_ptr, R, BLOCK: tl.constexpr, ACC: tl.constexpr):
    """out[b] = sum of the partial rows of video b's blocks, added in block order."""
    b = tl.program_id(1).to(tl.int64)
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < R
    j0 = tl.load(blk_cu_ptr + b)
    j1 = tl.load(blk_cu_ptr + b + 1)
    acc = tl.zeros((BLOCK,), dtype=ACC)
    for j in range(j0, j1):
        acc += tl.load(part_ptr + j * R + cols, mask=mask, other=0.0)
    tl.store(out_ptr + b * R + cols, acc, mask=mask)


def segment_reduce(part: Tensor, blk_cu: Tensor) -> Tensor:
    """(B, R) per-video sums of the (bound, R) partial rows, in block order."""
    batch = blk_cu.numel() - 1
    width = part.shape[1]
    out = launch.empty((batch, width), part.dtype, part.device)
    grid = (triton.cdiv(width, BLOCK_R), batch)
    _segment_reduce_kernel[grid](part, out, blk_cu, width, BLOCK=BLOCK_R, ACC=tl_dtype(part.dtype),
                                 num_warps=launch.NUM_WARPS)
    return out
