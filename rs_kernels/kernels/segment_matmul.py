"""Per-video W^T X for given weights: the segment matmul's forward, and the walk backward's Z gO."""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from . import launch
from .common import block_d, block_rows, centre_pad, dot_precision, tl_dtype
from .reduce import segment_reduce


@triton.jit
def _segment_matmul_kernel(w_ptr, x_ptr, part_ptr, cu_ptr, blk_vid_ptr, blk_cu_ptr, C, D,
                           CP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                           ACC: tl.constexpr, PREC: tl.constexpr):
    """One T block: its partial row W_blk^T x_blk (C*D) of its video's sum."""
    j = tl.program_id(0).to(tl.int64)
    vid, vsafe, rows, tmask = block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T)
    if vid >= 0:
        ks = tl.arange(0, CP)
        kmask = ks < C
        w = tl.load(w_ptr + rows[:, None] * C + ks[None, :], mask=tmask[:, None] & kmask[None, :], other=0.0).to(ACC)
        wt = tl.trans(w)
        prow = part_ptr + j * C * D
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            dmask = ds < D
            xc = tl.load(x_ptr + rows[:, None] * D + ds[None, :],
                         mask=tmask[:, None] & dmask[None, :], other=0.0).to(ACC)
            a = tl.dot(wt, xc, input_precision=PREC, out_dtype=ACC)
            tl.store(prow + ks[:, None] * D + ds[None, :], a, mask=kmask[:, None] & dmask[None, :])


def segment_matmul(w: Tensor, x: Tensor, cu: Tensor, table) -> Tensor:
    """(B, C*D) per-video sums w_b^T x_b in the accumulation dtype; w (N, C), x (N, D) contiguous."""
    d, c = x.shape[1], w.shape[1]
    acc = launch.acc_dtype(x.dtype)
    blk_vid, blk_cu = table
    bound = blk_vid.shape[0]  # programs: one per T block
    part = launch.empty((bound, c * d), acc, x.device)
    _segment_matmul_kernel[(bound,)](
        w, x, part, cu, blk_vid, blk_cu, c, d,
        CP=centre_pad(c), BLOCK_T=launch.BLOCK_T, BLOCK_D=block_d(d), ACC=tl_dtype(acc), PREC=dot_precision(acc),
        num_warps=launch.NUM_WARPS,
    )
    return segment_reduce(part, blk_cu)
