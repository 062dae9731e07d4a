"""What the kernels share: the rows of a program's T block, and the launch settings of a dtype."""
from __future__ import annotations

import torch
import triton
import triton.language as tl


def tl_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def dot_precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float64 else "tf32x3"


def centre_pad(c: int) -> int:
    """Centres padded inside the kernels: tl.dot needs every dimension >= 16."""
    return max(16, triton.next_power_of_2(max(c, 1)))


def block_d(d: int) -> int:
    return min(64, max(16, triton.next_power_of_2(d)))


@triton.jit
def block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T: tl.constexpr):
    """Video of T block j (-1 past the last), its rows (int64) and their mask."""
    vid = tl.load(blk_vid_ptr + j)
    vsafe = tl.maximum(vid, 0)
    t0 = tl.load(cu_ptr + vsafe)
    t1 = tl.load(cu_ptr + vsafe + 1)
    first = tl.load(blk_cu_ptr + vsafe)
    rows = t0 + (j - first) * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    tmask = rows < t1  # callers use it only under `if vid >= 0`
    return vid, vsafe, rows, tmask
