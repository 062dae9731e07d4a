"""Per-video W^T X on packed input: out[b] = w_b^T x_b over the rows of video b, (B, C, D).

This is the prediction head's class-wise pooling (FAC-Net's MIL head): each class pools its
video's snippets with its own attention weights. In plain PyTorch it is one small matmul per video
(B launches forward, 2B backward, and the lengths read back to the host); the head runs it on all
three branches of every step, so on a GPU it was the largest share of a step's kernel launches.

Triton path (``rs_kernels::segment_matmul_fwd`` / ``_bwd``):
  forward: ``_triton_utils._assign_fwd_kernel`` with the weights as its assignments (LOAD_Z): the
    block partials of W^T x, reduced per video in a fixed order (deterministic);
  backward (g = dL/dout): one pass over each T block, dx_t = sum_c w_tc g_{b(t),c} and
    dw_tc = <x_t, g_{b(t),c}> (``_segment_matmul_bwd_kernel``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from . import _triton_utils as tu
from . import reference
from ._dispatch import resolve_impl
from .varlen import check_cu_seqlens, check_packed_meta


def _check(w: Tensor, x: Tensor, cu_seqlens: Tensor) -> None:
    """Shape, dtype and device checks (no data access: also run on fake tensors)."""
    check_packed_meta(x, {"cu_seqlens": cu_seqlens}, {"w": w})
    if w.dim() != 2 or w.shape[0] != x.shape[0]:
        raise ValueError(f"w must be (N, C) with N = {x.shape[0]} rows like x, got shape {tuple(w.shape)}")
    if w.dtype != x.dtype:
        raise ValueError(f"w must have x's dtype {x.dtype}, got {w.dtype}")


@triton.jit
def _segment_matmul_bwd_kernel(w_ptr, x_ptr, g_ptr, dw_ptr, dx_ptr, cu_ptr, blk_vid_ptr, blk_cu_ptr, C, D,
                               CP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                               ACC: tl.constexpr, PREC: tl.constexpr):
    """One T block: dx = w g_b (BLOCK_T, D), written chunk by chunk; dw = x g_b^T (BLOCK_T, C), accumulated."""
    j = tl.program_id(0).to(tl.int64)
    vid, vsafe, rows, tmask = tu._block_rows(j, blk_vid_ptr, blk_cu_ptr, cu_ptr, BLOCK_T)
    if vid >= 0:
        ks = tl.arange(0, CP)
        kmask = ks < C
        wmask = tmask[:, None] & kmask[None, :]
        w = tl.load(w_ptr + rows[:, None] * C + ks[None, :], mask=wmask, other=0.0).to(ACC)
        dw = tl.zeros((BLOCK_T, CP), dtype=ACC)
        gbase = g_ptr + vsafe * C * D
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            dmask = ds < D
            tdm = tmask[:, None] & dmask[None, :]
            xofs = rows[:, None] * D + ds[None, :]
            xc = tl.load(x_ptr + xofs, mask=tdm, other=0.0).to(ACC)
            gc = tl.load(gbase + ks[:, None] * D + ds[None, :], mask=kmask[:, None] & dmask[None, :],
                         other=0.0).to(ACC)
            dx = tl.dot(w, gc, input_precision=PREC, out_dtype=ACC)
            tl.store(dx_ptr + xofs, dx.to(dx_ptr.dtype.element_ty), mask=tdm)
            dw = tl.dot(xc, tl.trans(gc), dw, input_precision=PREC, out_dtype=ACC)
        tl.store(dw_ptr + rows[:, None] * C + ks[None, :], dw.to(dw_ptr.dtype.element_ty), mask=wmask)


# ---------------------------------------------------------------------------------------------
# ops
# ---------------------------------------------------------------------------------------------

@torch.library.custom_op("rs_kernels::segment_matmul_fwd", mutates_args=())
def segment_matmul_fwd(w: Tensor, x: Tensor, cu_seqlens: Tensor) -> Tensor:
    """(B, C, D) per-video W^T X."""
    _check(w, x, cu_seqlens)
    check_cu_seqlens(cu_seqlens, x.shape[0])
    tu.check_launchable(x, "segment_matmul")
    w, x = w.contiguous(), x.contiguous()
    cu = cu_seqlens.to(torch.int64).contiguous()
    (n, d), c, batch = x.shape, w.shape[1], cu.numel() - 1
    if c == 0:
        return x.new_zeros(batch, 0, d)
    with tu.device_ctx(x):
        sums = tu.assign_fwd(x, x, cu, tu.block_table(cu, n), 0.0, cmax=c, stride_cb=0, z=w, load_z=True,
                             with_mass=False)
    return sums.view(batch, c, d).to(x.dtype)


@segment_matmul_fwd.register_fake
def _(w, x, cu_seqlens):
    _check(w, x, cu_seqlens)
    return x.new_empty(cu_seqlens.shape[0] - 1, w.shape[1], x.shape[1])


@torch.library.custom_op("rs_kernels::segment_matmul_bwd", mutates_args=())
def segment_matmul_bwd(grad_out: Tensor, w: Tensor, x: Tensor, cu_seqlens: Tensor) -> tuple[Tensor, Tensor]:
    """(dw (N, C), dx (N, D)) from dL/dout (B, C, D)."""
    tu.check_launchable(x, "segment_matmul")
    w, x, g = w.contiguous(), x.contiguous(), grad_out.contiguous()
    cu = cu_seqlens.to(torch.int64).contiguous()
    (n, d), c = x.shape, w.shape[1]
    if c == 0:
        return torch.zeros_like(w), torch.zeros_like(x)
    acc = tu.acc_dtype(x.dtype)
    dw, dx = tu.empty((n, c), w.dtype, x.device), tu.empty((n, d), x.dtype, x.device)
    blk_vid, blk_cu, bound = tu.block_table(cu, n)
    with tu.device_ctx(x):
        _segment_matmul_bwd_kernel[(bound,)](
            w, x, g, dw, dx, cu, blk_vid, blk_cu, c, d,
            CP=tu.centre_pad(c), BLOCK_T=tu.BLOCK_T, BLOCK_D=tu.block_d(d),
            ACC=tu.tl_dtype(acc), PREC=tu.dot_precision(acc), num_warps=tu.NUM_WARPS,
        )
    return dw, dx


@segment_matmul_bwd.register_fake
def _(grad_out, w, x, cu_seqlens):
    return torch.empty_like(w), torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    w, x, cu_seqlens = inputs
    ctx.save_for_backward(w, x, cu_seqlens)


def _backward(ctx, grad_out):
    w, x, cu_seqlens = ctx.saved_tensors
    dw, dx = torch.ops.rs_kernels.segment_matmul_bwd(grad_out, w, x, cu_seqlens)
    return dw, dx, None


segment_matmul_fwd.register_autograd(_backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.rs_kernels.segment_matmul_fwd)
def _fwd_flops(w_shape, x_shape, *args, **kwargs) -> int:
    return 2 * x_shape[0] * w_shape[1] * x_shape[1]  # what the B per-video matmuls cost together


@register_flop_formula(torch.ops.rs_kernels.segment_matmul_bwd)
def _bwd_flops(grad_shape, w_shape, x_shape, *args, **kwargs) -> int:
    return 4 * x_shape[0] * w_shape[1] * x_shape[1]  # dx = w g_b and dw = x g_b^T


# ---------------------------------------------------------------------------------------------
# public function
# ---------------------------------------------------------------------------------------------

def segment_matmul(w: Tensor, x: Tensor, cu_seqlens: Tensor, impl: str | None = None) -> Tensor:
    """(B, C, D): out[b] = w[rows of b]^T x[rows of b], for w (N, C) and x (N, D) packed alike."""
    _check(w, x, cu_seqlens)
    if resolve_impl(impl, x) == "triton":
        return torch.ops.rs_kernels.segment_matmul_fwd(w, x, cu_seqlens)
    check_cu_seqlens(cu_seqlens, x.shape[0])
    return reference.segment_matmul(w, x, cu_seqlens)
