"""Each row mixed with its video's (C, D) matrix: out_t = coef ([x_t +] sum_c z_tc M_bc)."""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from . import launch
from .common import block_d, block_rows, centre_pad, dot_precision, tl_dtype


@triton.jit
def _mix_kernel(z_ptr, m_ptr, x_ptr, out_ptr, dz_ptr, cu_ptr, blk_vid_ptr, blk_cu_ptr, CMAX, D, coef,
                ADD_X: tl.constexpr, WITH_DZ: tl.constexpr,
                CP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                ACC: tl.constexpr, PREC: tl.constexpr):
    """One T block of out_t = coef ([x_t +] sum_c z_tc M_bc), M (B, CMAX, D) the video's matrix;
    WITH_DZ also writes dz_tc = <x_t, M_bc> (dz_ptr is None otherwise). The walk's pass 2 is
    x* = (1 - w)(x + Z^T U); the backward of a per-video z^T x is dx = z G and dz = x G^T, G its
    output gradient."""
    j = tl.program_id(0).to(tl.int64)
    vid, vsafe, rows, tmask = block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T)
    if vid >= 0:
        ks = tl.arange(0, CP)
        kmask = ks < CMAX
        zmask = tmask[:, None] & kmask[None, :]
        z = tl.load(z_ptr + rows[:, None] * CMAX + ks[None, :], mask=zmask, other=0.0).to(ACC)
        dz = tl.zeros((BLOCK_T, CP), dtype=ACC)
        mbase = m_ptr + vsafe * CMAX * D
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            dmask = ds < D
            tdm = tmask[:, None] & dmask[None, :]
            xofs = rows[:, None] * D + ds[None, :]
            xc = tl.load(x_ptr + xofs, mask=tdm, other=0.0).to(ACC)
            mc = tl.load(mbase + ks[:, None] * D + ds[None, :], mask=kmask[:, None] & dmask[None, :],
                         other=0.0).to(ACC)
            if ADD_X:
                o = tl.dot(z, mc, xc, input_precision=PREC, out_dtype=ACC)
            else:
                o = tl.dot(z, mc, input_precision=PREC, out_dtype=ACC)
            tl.store(out_ptr + xofs, (o * coef).to(out_ptr.dtype.element_ty), mask=tdm)
            if WITH_DZ:
                dz = tl.dot(xc, tl.trans(mc), dz, input_precision=PREC, out_dtype=ACC)
        if WITH_DZ:
            tl.store(dz_ptr + rows[:, None] * CMAX + ks[None, :], dz.to(dz_ptr.dtype.element_ty), mask=zmask)


def mix(z: Tensor, m: Tensor, x: Tensor, out: Tensor, cu: Tensor, table, *, coef: float = 1.0,
        add_x: bool = False, dz: Tensor | None = None) -> None:
    """Writes out = coef ([x +] z M_b) row by row, and dz = x M_b^T when given.

    All contiguous: z and dz (N, C), m (B, C, D), x and out (N, D).
    """
    d = x.shape[1]
    cmax = z.shape[1]
    acc = launch.acc_dtype(x.dtype)
    blk_vid, blk_cu = table
    bound = blk_vid.shape[0]  # programs: one per T block
    _mix_kernel[(bound,)](
        z, m, x, out, dz, cu, blk_vid, blk_cu, cmax, d, float(coef),
        ADD_X=add_x, WITH_DZ=dz is not None, CP=centre_pad(cmax), BLOCK_T=launch.BLOCK_T, BLOCK_D=block_d(d),
        ACC=tl_dtype(acc), PREC=dot_precision(acc), num_warps=launch.NUM_WARPS,
    )
