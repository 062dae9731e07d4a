"""Shared Triton machinery of the EM-attention, random-walk and segment-matmul kernels.

The ops have the same shape of work: every snippet x_t of a video is scored against that video's
C centres (mu for EM, the representatives y for the walk) by cosine similarity, the scores go
through a softmax over the centres, and per-video sums over the snippets are needed (Z x, sum Z,
Z Z^T in the forward; the centre gradients in the backward). So one forward and one backward
streaming kernel serve them, switched by constexpr flags (with the weights given as Z, the
forward is also the segment matmul's), one segmented reduction turns their per-block partials
into per-video sums, and one kernel mixes each row with its video's (C, D) matrix (the walk's
output, the segment matmul's backward).

Layout and determinism
  * packed rows: video b owns rows cu[b]:cu[b+1] of x (N, D); T blocks of BLOCK_T rows never
    straddle two videos. The grid is one program per (video, T block), enumerated by
    :func:`block_table`; its size is a bound known from shapes alone (no host sync).
  * per-video centres are padded to (B, CMAX, D) (EM: CMAX = K; walk: CMAX = max M_b, with the
    count of video b in ccu) and padded inside the kernels to CP >= 16 rows, masked.
  * per-video sums: each program writes its block's partial row; :func:`segment_reduce` adds the
    partial rows of each video in block order. No atomics anywhere, so results are bitwise
    reproducible (fixed block sizes: no autotuning, which would change the summation order from
    one process to the next).
  * fp32 accumulation (fp64 when the inputs are fp64, for gradcheck); tl.dot in tf32x3 for fp32
    (fp32-accurate on tensor cores), ieee for fp64. Every tl.dot names out_dtype=ACC: Triton 3.6
    refuses an fp64 accumulator whose dtype the call leaves at its fp32 default.
"""
from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import varlen
from .reference import MASS_EPS, NORM_EPS  # noqa: F401  (MASS_EPS: for the ops' host-side algebra)

_KERNEL_NORM_EPS = tl.constexpr(NORM_EPS)  # the reference's guard, as a constant the kernels can read

# Rows per program. A program reads its block of x twice (scores, then Z^T x): the second read
# should hit L2, which favours small blocks; every block writes a C x D partial row, which favours
# large ones. RS_KERNELS_BLOCK_T (16, 32, 64, 128) overrides it for tuning; results depend on it
# bitwise (summation order), so it is fixed, not autotuned.
BLOCK_T = int(os.environ.get("RS_KERNELS_BLOCK_T", "32"))
if BLOCK_T not in (16, 32, 64, 128):
    raise ValueError(f"RS_KERNELS_BLOCK_T must be 16, 32, 64 or 128, got {BLOCK_T}")
BLOCK_R = 1024  # columns per program of the segmented reduction
_BLOCK_TABLE = "_rs_block_table"  # attribute of an offsets tensor: its block table (see block_table)
# Warps per program. At 4 the backward kernels use all 255 registers and spill a little (see
# tests/sm90_compile_probe.py); RS_KERNELS_NUM_WARPS (2, 4, 8) lets a GPU session measure the
# alternatives. Like BLOCK_T it can change results bitwise, so it is fixed per process.
NUM_WARPS = int(os.environ.get("RS_KERNELS_NUM_WARPS", "4"))
if NUM_WARPS not in (2, 4, 8):
    raise ValueError(f"RS_KERNELS_NUM_WARPS must be 2, 4 or 8, got {NUM_WARPS}")


def empty(shape, dtype: torch.dtype, device) -> Tensor:
    """Every buffer the launchers hand to a kernel comes from here (tests fill it with NaN)."""
    return torch.empty(shape, dtype=dtype, device=device)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation / statistics dtype: fp64 for fp64 inputs, fp32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def tl_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def dot_precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float64 else "tf32x3"


def centre_pad(c: int) -> int:
    """Centres padded inside the kernels: tl.dot needs every dimension >= 16."""
    return max(16, triton.next_power_of_2(max(c, 1)))


def block_d(d: int) -> int:
    return min(64, max(16, triton.next_power_of_2(d)))


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


def norm_grad_coef(v: Tensor, beta: Tensor) -> Tensor:
    """beta / (|v| (|v| + eps)), 0 where v = 0 (torch's norm backward there): the centres' radial term."""
    s = v.norm(dim=-1)
    den = s * (s + NORM_EPS)
    return torch.where(s > 0, beta / torch.where(s > 0, den, torch.ones_like(den)), torch.zeros_like(beta))


# ---------------------------------------------------------------------------------------------
# device functions
# ---------------------------------------------------------------------------------------------

@triton.jit
def _block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T: tl.constexpr):
    """Video of T block j (-1 past the last), its rows (int64) and their mask."""
    vid = tl.load(blk_vid_ptr + j)
    vsafe = tl.maximum(vid, 0)
    t0 = tl.load(cu_ptr + vsafe)
    t1 = tl.load(cu_ptr + vsafe + 1)
    first = tl.load(blk_cu_ptr + vsafe)
    rows = t0 + (j - first) * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    tmask = rows < t1  # callers use it only under `if vid >= 0`
    return vid, vsafe, rows, tmask


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


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------

@triton.jit
def _assign_fwd_kernel(
    x_ptr, c_ptr, z_ptr, part_ptr, cu_ptr, ccu_ptr, blk_vid_ptr, blk_cu_ptr,
    stride_cb, CMAX, D, R, tau,
    HAS_CNT: tl.constexpr, LOAD_Z: tl.constexpr, STORE_Z: tl.constexpr,
    WITH_MASS: tl.constexpr, WITH_H: tl.constexpr,
    CP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PREC: tl.constexpr,
):
    """One T block of one video: assignments Z (scores, softmax) and the block's partial row
    [Z^T x (CMAX*D) | sum_t Z (CMAX, if WITH_MASS) | Z^T Z (CMAX*CMAX, if WITH_H)].

    LOAD_Z: Z is read from z_ptr (N, CMAX) instead of computed (then x may be any (N, D) stream,
    e.g. the output gradient). One pass over x: the scores loop reads the block once from memory,
    the Z^T x loop reads it again from cache.
    """
    j = tl.program_id(0).to(tl.int64)
    vid, vsafe, rows, tmask = _block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T)
    if vid >= 0:
        ks, cmask, kstore = _centre_slots(ccu_ptr, vsafe, CMAX, HAS_CNT, CP)
        c_base = c_ptr + vsafe * stride_cb
        if LOAD_Z:
            z = tl.load(z_ptr + rows[:, None] * CMAX + ks[None, :],
                        mask=tmask[:, None] & kstore[None, :], other=0.0).to(ACC)
        else:
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
        if WITH_MASS:
            tl.store(prow + off + ks, tl.sum(z, 0), mask=kstore)
            off += CMAX
        if WITH_H:
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
    Z is recomputed from x and the centres (EM), or read from z_ptr (LOAD_Z, the walk).
    Pass 1 over D: the dots with the centres, Pa (and U); pass 2: dx and the partials.
    """
    j = tl.program_id(0).to(tl.int64)
    vid, vsafe, rows, tmask = _block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T)
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


@triton.jit
def _mix_kernel(z_ptr, m_ptr, x_ptr, out_ptr, dz_ptr, cu_ptr, blk_vid_ptr, blk_cu_ptr, CMAX, D, coef,
                ADD_X: tl.constexpr, WITH_DZ: tl.constexpr,
                CP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                ACC: tl.constexpr, PREC: tl.constexpr):
    """One T block of out_t = coef ([x_t +] sum_c z_tc M_bc), M (B, CMAX, D) the video's matrix;
    WITH_DZ also writes dz_tc = <x_t, M_bc>. The walk's pass 2 is x* = (1 - w)(x + Z^T U); the
    backward of a per-video z^T x is dx = z G and dz = x G^T, G its output gradient."""
    j = tl.program_id(0).to(tl.int64)
    vid, vsafe, rows, tmask = _block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T)
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


@triton.jit
def _segment_reduce_kernel(part_ptr, out_ptr, blk_cu_ptr, R, BLOCK: tl.constexpr, ACC: tl.constexpr):
    """out[b] = sum of the partial rows of video b's blocks, added in block order (deterministic)."""
    b = tl.program_id(1).to(tl.int64)
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < R
    j0 = tl.load(blk_cu_ptr + b)
    j1 = tl.load(blk_cu_ptr + b + 1)
    acc = tl.zeros((BLOCK,), dtype=ACC)
    for j in range(j0, j1):
        acc += tl.load(part_ptr + j * R + cols, mask=mask, other=0.0)
    tl.store(out_ptr + b * R + cols, acc, mask=mask)


# ---------------------------------------------------------------------------------------------
# launchers
# ---------------------------------------------------------------------------------------------

def segment_reduce(part: Tensor, blk_cu: Tensor) -> Tensor:
    """(B, R) per-video sums of the (bound, R) partial rows, in block order."""
    batch = blk_cu.numel() - 1
    width = part.shape[1]
    out = empty((batch, width), part.dtype, part.device)
    grid = (triton.cdiv(width, BLOCK_R), batch)
    _segment_reduce_kernel[grid](part, out, blk_cu, width, BLOCK=BLOCK_R, ACC=tl_dtype(part.dtype),
                                 num_warps=NUM_WARPS)
    return out


def mix(z: Tensor, m: Tensor, x: Tensor, out: Tensor, cu: Tensor, table, *, coef: float = 1.0,
        add_x: bool = False, dz: Tensor | None = None) -> None:
    """Writes out = coef ([x +] z M_b) row by row, and dz = x M_b^T when given (see _mix_kernel).

    All contiguous: z and dz (N, C), m (B, C, D), x and out (N, D).
    """
    d = x.shape[1]
    cmax = z.shape[1]
    acc = acc_dtype(x.dtype)
    blk_vid, blk_cu, bound = table
    _mix_kernel[(bound,)](
        z, m, x, out, dz if dz is not None else z, cu, blk_vid, blk_cu, cmax, d, float(coef),
        ADD_X=add_x, WITH_DZ=dz is not None, CP=centre_pad(cmax), BLOCK_T=BLOCK_T, BLOCK_D=block_d(d),
        ACC=tl_dtype(acc), PREC=dot_precision(acc), num_warps=NUM_WARPS,
    )


def assign_fwd(x: Tensor, centres: Tensor, cu: Tensor, table, tau: float, *, ccu: Tensor | None = None,
               cmax: int, stride_cb: int, z: Tensor | None = None, load_z: bool = False,
               store_z: bool = False, with_mass: bool = True, with_h: bool = False) -> Tensor:
    """Per-video sums [Z^T x | sum Z | Z^T Z] (B, R) of the assignments of x to the centres.

    centres (B, cmax, D) (stride_cb = 0: one set shared by all videos); ccu: per-video centre
    counts as offsets (None: cmax for all); z (N, cmax): written if store_z, read if load_z.
    """
    d = x.shape[1]
    acc = acc_dtype(x.dtype)
    blk_vid, blk_cu, bound = table
    width = cmax * d + (cmax if with_mass else 0) + (cmax * cmax if with_h else 0)
    part = empty((bound, width), acc, x.device)
    _assign_fwd_kernel[(bound,)](
        x, centres, z if z is not None else x, part, cu, ccu if ccu is not None else cu, blk_vid, blk_cu,
        stride_cb, cmax, d, width, float(tau),
        HAS_CNT=ccu is not None, LOAD_Z=load_z, STORE_Z=store_z, WITH_MASS=with_mass, WITH_H=with_h,
        CP=centre_pad(cmax), BLOCK_T=BLOCK_T, BLOCK_D=block_d(d), ACC=tl_dtype(acc), PREC=dot_precision(acc),
        num_warps=NUM_WARPS,
    )
    return segment_reduce(part, blk_cu)


def assign_bwd(x: Tensor, centres: Tensor, pa: Tensor, dcm: Tensor, dx: Tensor, cu: Tensor, table, tau: float, *,
               ccu: Tensor | None = None, g: Tensor | None = None, u: Tensor | None = None, coef_g: float = 0.0,
               hs: Tensor | None = None, z: Tensor | None = None, accumulate: bool = False) -> Tensor:
    """Writes (or adds to) dx; returns the per-video [sum_t Cy_tc x_t | beta] (B, C*D + C).

    centres, pa, u: (B, C, D) contiguous; dcm (B, C); hs (B, C, C); z (N, C) when given (else
    recomputed); g (N, D) the output gradient when given.
    """
    d = x.shape[1]
    cmax = centres.shape[1]
    acc = acc_dtype(x.dtype)
    blk_vid, blk_cu, bound = table
    width = cmax * d + cmax
    part = empty((bound, width), acc, x.device)
    _assign_bwd_kernel[(bound,)](
        x, g if g is not None else x, centres, pa, u if u is not None else pa, hs if hs is not None else dcm,
        dcm, z if z is not None else x, dx, part, cu, ccu if ccu is not None else cu, blk_vid, blk_cu,
        cmax, d, width, float(tau), float(coef_g),
        HAS_CNT=ccu is not None, LOAD_Z=z is not None, WITH_G=g is not None, WITH_HS=hs is not None,
        ACCUM=accumulate, CP=centre_pad(cmax), BLOCK_T=BLOCK_T, BLOCK_D=block_d(d),
        ACC=tl_dtype(acc), PREC=dot_precision(acc), num_warps=NUM_WARPS,
    )
    return segment_reduce(part, blk_cu)
