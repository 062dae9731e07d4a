"""Assignment of snippets to per-video centres, and the per-video sums of an assignment step.

Z_tc = softmax_c(tau n(c_c) n(x_t)) over the video's centres (mu for EM, the representatives y for
the walk); the forward kernel writes each T block's partial row of [Z^T x | sum_t Z | Z^T Z], the
backward kernel goes back through the sums and the scores. EM attention runs the forward once per
iteration, the random walk once (pass 1, with Z stored for its pass 2 and backward).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..reference import NORM_EPS
from . import launch
from .common import block_d, block_rows, centre_pad, dot_precision, tl_dtype
from .reduce import segment_reduce

_KERNEL_NORM_EPS = tl.constexpr(NORM_EPS)  # the reference's guard, as a constant the kernels can read


@triton.jit
def _centre_slots(ccu_ptr, vsafe, CMAX, HAS_CNT: tl.constexpr, CP: tl.constexpr):
    """The CP padded centre slots of a video: (slot ids, the video's real centres, the stored ones)."""
    if HAS_CNT:
        cnt = tl.load(ccu_ptr + vsafe + 1) - tl.load(ccu_ptr + vsafe)
    else:
        cnt = CMAX
    ks = tl.arange(0, CP)
    return ks, ks < cnt, ks < CMAX


@triton.jit
def _cosine(dot, xx, cc, tau):
    """S = tau <c, x> / ((|x| + eps)(|c| + eps)) = tau n(c) n(x)^T, and the norms."""
    r = tl.sqrt(xx)
    s = tl.sqrt(cc)
    scores = dot * tau / ((r + _KERNEL_NORM_EPS)[:, None] * (s + _KERNEL_NORM_EPS)[None, :])
    return scores, r, s


@triton.jit
def _score_chunk(x_ptr, c_base, rows, ks, tmask, cmask, d0, D, dot, xx, cc,
                 BLOCK_D: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr):
    """One BLOCK_D chunk of what the cosine scores need: dot += x c^T, xx += |x|^2, cc += |c|^2.

    Also returns the chunk's columns, their mask and x's chunk, which the backward uses again.
    """
    ds = d0 + tl.arange(0, BLOCK_D)
    dmask = ds < D
    xc = tl.load(x_ptr + rows[:, None] * D + ds[None, :], mask=tmask[:, None] & dmask[None, :], other=0.0).to(ACC)
    cb = tl.load(c_base + ks[:, None] * D + ds[None, :], mask=cmask[:, None] & dmask[None, :], other=0.0).to(ACC)
    dot = tl.dot(xc, tl.trans(cb), dot, input_precision=PREC, out_dtype=ACC)
    return ds, dmask, xc, dot, xx + tl.sum(xc * xc, 1), cc + tl.sum(cb * cb, 1)


@triton.jit
def _masked_softmax(scores, tmask, cmask):
    """Softmax over the centres (axis 1); 0 for padded rows, padded centres, and videos with no centre."""
    scores = tl.where(cmask[None, :], scores, float("-inf"))
    mx = tl.max(scores, 1)
    mx = tl.where(mx == float("-inf"), 0.0, mx)
    e = tl.where(cmask[None, :] & tmask[:, None], tl.exp(scores - mx[:, None]), 0.0)
    den = tl.sum(e, 1)
    den = tl.where(den > 0, den, 1.0)
    return e / den[:, None]


@triton.jit
def _score_grad(z, dz, scores, r, s, tau):
    """Back through Z = softmax_c(S) and S = tau n(c) n(x)^T, for one block of snippets.

    dS = Z * (dZ - sum_c Z dZ). With n(v) = v / (|v| + eps), dn -> dv = dn / (|v| + eps)
    - v <dn, v> / (|v| (|v| + eps)^2), and <dn(x_t), x_t> = (|x_t| + eps) sum_c dS_tc S_tc, so
      dx_t = sum_c Cy_tc c_c - alpha_t x_t,   Cy = tau dS / ((|x| + eps)(|c| + eps)),
      alpha_t = sum_c dS_tc S_tc / (|x_t| (|x_t| + eps))   (0 at x_t = 0, as torch's norm backward)
      dc_c = sum_t Cy_tc x_t - c_c beta_c / (|c_c| (|c_c| + eps)),   beta_c = sum_t dS_tc S_tc
    Returns Cy, alpha and this block's part of beta.
    """
    ds = z * (dz - tl.sum(z * dz, 1)[:, None])
    cy = ds * tau / ((r + _KERNEL_NORM_EPS)[:, None] * (s + _KERNEL_NORM_EPS)[None, :])
    dss = ds * scores
    den = r * (r + _KERNEL_NORM_EPS)
    alpha = tl.sum(dss, 1) / tl.where(r > 0, den, 1.0)
    beta = tl.sum(dss, 0)
    return cy, alpha, beta


@triton.jit
def _assign_fwd_kernel(
    x_ptr, c_ptr, z_ptr, part_ptr, cu_ptr, ccu_ptr, blk_vid_ptr, blk_cu_ptr,
    stride_cb, CMAX, D, R, tau,
    HAS_CNT: tl.constexpr, STORE_Z: tl.constexpr, WITH_H: tl.constexpr,
    CP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PREC: tl.constexpr,
):
    """One T block of one video: assignments Z (scores, softmax) and the block's partial row
    [Z^T x (CMAX*D) | sum_t Z (CMAX) | Z^T Z (CMAX*CMAX, if WITH_H)].

    STORE_Z: Z is written to z_ptr (N, CMAX); HAS_CNT: video b has ccu[b+1] - ccu[b] <= CMAX
    centres (else CMAX). An unused pointer is None. One pass over x: the scores loop reads the
    block once from memory, the Z^T x loop reads it again from cache.
    """
    j = tl.program_id(0).to(tl.int64)
    vid, vsafe, rows, tmask = block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T)
    if vid >= 0:
        ks, cmask, kstore = _centre_slots(ccu_ptr, vsafe, CMAX, HAS_CNT, CP)
        c_base = c_ptr + vsafe * stride_cb
        dot = tl.zeros((BLOCK_T, CP), dtype=ACC)
        xx = tl.zeros((BLOCK_T,), dtype=ACC)
        cc = tl.zeros((CP,), dtype=ACC)
        for d0 in range(0, D, BLOCK_D):
            _, _, _, dot, xx, cc = _score_chunk(x_ptr, c_base, rows, ks, tmask, cmask, d0, D, dot, xx, cc,
                                                BLOCK_D, ACC, PREC)
        scores, r, s = _cosine(dot, xx, cc, tau)
        z = _masked_softmax(scores, tmask, cmask)
        if STORE_Z:
            tl.store(z_ptr + rows[:, None] * CMAX + ks[None, :], z.to(z_ptr.dtype.element_ty),
                     mask=tmask[:, None] & kstore[None, :])
        prow = part_ptr + j * R
        zt = tl.trans(z)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            dmask = ds < D
            xc = tl.load(x_ptr + rows[:, None] * D + ds[None, :],
                         mask=tmask[:, None] & dmask[None, :], other=0.0).to(ACC)
            a = tl.dot(zt, xc, input_precision=PREC, out_dtype=ACC)
            tl.store(prow + ks[:, None] * D + ds[None, :], a, mask=kstore[:, None] & dmask[None, :])
        off = CMAX * D
        tl.store(prow + off + ks, tl.sum(z, 0), mask=kstore)
        if WITH_H:
            off += CMAX
            h = tl.dot(zt, z, input_precision=PREC, out_dtype=ACC)
            tl.store(prow + off + ks[:, None] * CMAX + ks[None, :], h, mask=kstore[:, None] & kstore[None, :])


@triton.jit
def _assign_bwd_kernel(
    x_ptr, g_ptr, c_ptr, pa_ptr, u_ptr, hs_ptr, dcm_ptr, z_ptr, dx_ptr, part_ptr,
    cu_ptr, ccu_ptr, blk_vid_ptr, blk_cu_ptr,
    CMAX, D, R, tau, coef_g,
    HAS_CNT: tl.constexpr, LOAD_Z: tl.constexpr, WITH_G: tl.constexpr, WITH_HS: tl.constexpr,
    ACCUM: tl.constexpr,
    CP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PREC: tl.constexpr,
):
    """Backward of one T block through the sums over snippets of an assignment step.

    The op's own algebra reduces what flows back into Z to
      dZ_tc = <Pa_c, x_t> + dcm_c [+ coef_g <U_c, g_t>] [+ (Z Hs)_tc]
    (Pa, dcm, U, Hs: per-video (B, CMAX, .) tensors the op computes), and into x directly to
      dx_t = sum_c Z_tc Pa_c [+ coef_g g_t].
    This kernel adds the path through the scores (see _score_grad): it writes
      dx_t (+)= sum_c Z_tc Pa_c + sum_c Cy_tc c_c - alpha_t x_t [+ coef_g g_t]
    and the block's partial row [sum_t Cy_tc x_t (CMAX*D) | beta (CMAX)] for the centres' gradient.
    Z is recomputed from x and the centres (EM), or read from z_ptr (LOAD_Z, the walk). The
    pointers of the terms a launch leaves out (g and u, hs, z, ccu) are None.
    Pass 1 over D: the dots with the centres, Pa (and U); pass 2: dx and the partials.
    """
    j = tl.program_id(0).to(tl.int64)
    vid, vsafe, rows, tmask = block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T)
    if vid >= 0:
        ks, cmask, kstore = _centre_slots(ccu_ptr, vsafe, CMAX, HAS_CNT, CP)
        vbase = vsafe * CMAX * D
        dot = tl.zeros((BLOCK_T, CP), dtype=ACC)
        xp = tl.zeros((BLOCK_T, CP), dtype=ACC)
        gu = tl.zeros((BLOCK_T, CP), dtype=ACC)
        xx = tl.zeros((BLOCK_T,), dtype=ACC)
        cc = tl.zeros((CP,), dtype=ACC)
        for d0 in range(0, D, BLOCK_D):
            ds, dmask, xc, dot, xx, cc = _score_chunk(x_ptr, c_ptr + vbase, rows, ks, tmask, cmask, d0, D,
                                                      dot, xx, cc, BLOCK_D, ACC, PREC)
            tdm = tmask[:, None] & dmask[None, :]
            cdm = cmask[:, None] & dmask[None, :]
            cofs = vbase + ks[:, None] * D + ds[None, :]
            pb = tl.load(pa_ptr + cofs, mask=cdm, other=0.0).to(ACC)
            xp = tl.dot(xc, tl.trans(pb), xp, input_precision=PREC, out_dtype=ACC)
            if WITH_G:
                gc = tl.load(g_ptr + rows[:, None] * D + ds[None, :], mask=tdm, other=0.0).to(ACC)
                ub = tl.load(u_ptr + cofs, mask=cdm, other=0.0).to(ACC)
                gu = tl.dot(gc, tl.trans(ub), gu, input_precision=PREC, out_dtype=ACC)
        scores, r, s = _cosine(dot, xx, cc, tau)
        if LOAD_Z:
            z = tl.load(z_ptr + rows[:, None] * CMAX + ks[None, :],
                        mask=tmask[:, None] & kstore[None, :], other=0.0).to(ACC)
        else:
            z = _masked_softmax(scores, tmask, cmask)
        dcm = tl.load(dcm_ptr + vsafe * CMAX + ks, mask=cmask, other=0.0).to(ACC)
        dz = xp + dcm[None, :]
        if WITH_G:
            dz += coef_g * gu
        if WITH_HS:
            hs = tl.load(hs_ptr + vsafe * CMAX * CMAX + ks[:, None] * CMAX + ks[None, :],
                         mask=cmask[:, None] & cmask[None, :], other=0.0).to(ACC)
            dz = tl.dot(z, hs, dz, input_precision=PREC, out_dtype=ACC)
        cy, alpha, beta = _score_grad(z, dz, scores, r, s, tau)
        prow = part_ptr + j * R
        cyt = tl.trans(cy)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            dmask = ds < D
            tdm = tmask[:, None] & dmask[None, :]
            cdm = cmask[:, None] & dmask[None, :]
            cofs = vbase + ks[:, None] * D + ds[None, :]
            xofs = rows[:, None] * D + ds[None, :]
            xc = tl.load(x_ptr + xofs, mask=tdm, other=0.0).to(ACC)
            cb = tl.load(c_ptr + cofs, mask=cdm, other=0.0).to(ACC)
            pb = tl.load(pa_ptr + cofs, mask=cdm, other=0.0).to(ACC)
            dx = tl.dot(z, pb, input_precision=PREC, out_dtype=ACC)
            dx = tl.dot(cy, cb, dx, input_precision=PREC, out_dtype=ACC)
            dx -= alpha[:, None] * xc
            if WITH_G:
                gc = tl.load(g_ptr + xofs, mask=tdm, other=0.0).to(ACC)
                dx += coef_g * gc
            if ACCUM:
                dx += tl.load(dx_ptr + xofs, mask=tdm, other=0.0).to(ACC)
            tl.store(dx_ptr + xofs, dx.to(dx_ptr.dtype.element_ty), mask=tdm)
            e = tl.dot(cyt, xc, input_precision=PREC, out_dtype=ACC)
            tl.store(prow + ks[:, None] * D + ds[None, :], e, mask=kstore[:, None] & dmask[None, :])
        tl.store(prow + CMAX * D + ks, beta, mask=kstore)



def assign_fwd(x: Tensor, centres: Tensor, cu: Tensor, table, tau: float, *, cmax: int, stride_cb: int,
               ccu: Tensor | None = None, z: Tensor | None = None, with_h: bool = False) -> Tensor:
    """Per-video sums [Z^T x | sum Z | Z^T Z if with_h] (B, R) of the assignments of x to the centres.

    centres (B, cmax, D) (stride_cb = 0: one set shared by all videos); ccu: per-video centre
    counts as offsets (None: cmax for all); z (N, cmax): Z is written there when given.
    """
    d = x.shape[1]
    acc = launch.acc_dtype(x.dtype)
    blk_vid, blk_cu = table
    bound = blk_vid.shape[0]  # programs: one per T block
    width = cmax * d + cmax + (cmax * cmax if with_h else 0)
    part = launch.empty((bound, width), acc, x.device)
    _assign_fwd_kernel[(bound,)](
        x, centres, z, part, cu, ccu, blk_vid, blk_cu, stride_cb, cmax, d, width, float(tau),
        HAS_CNT=ccu is not None, STORE_Z=z is not None, WITH_H=with_h,
        CP=centre_pad(cmax), BLOCK_T=launch.BLOCK_T, BLOCK_D=block_d(d), ACC=tl_dtype(acc), PREC=dot_precision(acc),
        num_warps=launch.NUM_WARPS,
    )
    return segment_reduce(part, blk_cu)


def assign_bwd(x: Tensor, centres: Tensor, pa: Tensor, dcm: Tensor, dx: Tensor, cu: Tensor, table, tau: float, *,
               ccu: Tensor | None = None, g: Tensor | None = None, u: Tensor | None = None, coef_g: float = 0.0,
               hs: Tensor | None = None, z: Tensor | None = None, accumulate: bool = False) -> Tensor:
    """Writes (or adds to) dx; returns the per-video [sum_t Cy_tc x_t | beta] (B, C*D + C).

    centres, pa, u: (B, C, D) contiguous; dcm (B, C); hs (B, C, C); z (N, C) when given (else
    recomputed); g (N, D) the output gradient when given, with u.
    """
    d = x.shape[1]
    cmax = centres.shape[1]
    acc = launch.acc_dtype(x.dtype)
    blk_vid, blk_cu = table
    bound = blk_vid.shape[0]  # programs: one per T block
    width = cmax * d + cmax
    part = launch.empty((bound, width), acc, x.device)
    _assign_bwd_kernel[(bound,)](
        x, g, centres, pa, u, hs, dcm, z, dx, part, cu, ccu, blk_vid, blk_cu,
        cmax, d, width, float(tau), float(coef_g),
        HAS_CNT=ccu is not None, LOAD_Z=z is not None, WITH_G=g is not None, WITH_HS=hs is not None,
        ACCUM=accumulate, CP=centre_pad(cmax), BLOCK_T=launch.BLOCK_T, BLOCK_D=block_d(d),
        ACC=tl_dtype(acc), PREC=dot_precision(acc), num_warps=launch.NUM_WARPS,
    )
    return segment_reduce(part, blk_cu)


def norm_grad_coef(v: Tensor, beta: Tensor) -> Tensor:
    """beta / (|v| (|v| + eps)), 0 where v = 0 (torch's norm backward there): the centres' radial
    term, which completes :func:`assign_bwd`'s sum_t Cy_tc x_t into the centres' gradient."""
    s = v.norm(dim=-1)
    den = s * (s + NORM_EPS)
    return torch.where(s > 0, beta / torch.where(s > 0, den, torch.ones_like(den)), torch.zeros_like(beta))
