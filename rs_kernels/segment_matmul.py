"""Per-video W^T X on packed input: out[b] = w_b^T x_b over the rows of video b, (B, C, D).

This is the prediction head's class-wise pooling (FAC-Net's MIL head): each class pools its
video's snippets with its own attention weights. In plain PyTorch it is one small matmul per video
(B launches forward, 2B backward, and the lengths read back to the host); the head runs it on all
three branches of every step, so on a GPU it was the largest share of a step's kernel launches.

Triton path (``rs_kernels::segment_matmul_fwd`` / ``_bwd``):
  forward (``kernels/segment_matmul.py``): the block partials of W^T x, reduced per video in a
    fixed order (deterministic);
  backward (g = dL/dout): one pass over each T block, dx_t = sum_c w_tc g_{b(t),c} and
    dw_tc = <x_t, g_{b(t),c}> (``kernels/mix.py``).
Narrower than the matmuls it replaces: w and x must share a dtype (no autocast casting), both
gradients are always computed, and there is no double backward.
The custom ops import their kernels when they run: Triton is loaded on the Triton path only.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from . import padded, reference
from ._dispatch import resolve_impl
from .kernels import launch
from .varlen import check_cu_seqlens, check_packed_meta


def _check(w: Tensor, x: Tensor, cu_seqlens: Tensor) -> None:
    """Shape, dtype and device checks (no data access: also run on fake tensors)."""
    check_packed_meta(x, {"cu_seqlens": cu_seqlens}, {"w": w})
    if w.dim() != 2 or w.shape[0] != x.shape[0]:
        raise ValueError(f"w must be (N, C) with N = {x.shape[0]} rows like x, got shape {tuple(w.shape)}")
    if w.dtype != x.dtype:
        raise ValueError(f"w must have x's dtype {x.dtype}, got {w.dtype}")


# ---------------------------------------------------------------------------------------------
# ops
# ---------------------------------------------------------------------------------------------

@torch.library.custom_op("rs_kernels::segment_matmul_fwd", mutates_args=())
def segment_matmul_fwd(w: Tensor, x: Tensor, cu_seqlens: Tensor) -> Tensor:
    """(B, C, D) per-video W^T X."""
    from .kernels import segment_matmul as kernel

    _check(w, x, cu_seqlens)
    check_cu_seqlens(cu_seqlens, x.shape[0])
    launch.check_launchable(x, "segment_matmul")
    w, x = w.contiguous(), x.contiguous()
    cu = cu_seqlens.to(torch.int64).contiguous()
    (n, d), c, batch = x.shape, w.shape[1], cu.numel() - 1
    if c == 0:
        return x.new_zeros(batch, 0, d)
    with launch.device_ctx(x):
        sums = kernel.segment_matmul(w, x, cu, launch.block_table(cu, n))
    return sums.view(batch, c, d).to(x.dtype)


@segment_matmul_fwd.register_fake
def _(w, x, cu_seqlens):
    _check(w, x, cu_seqlens)
    return x.new_empty(cu_seqlens.shape[0] - 1, w.shape[1], x.shape[1])


@torch.library.custom_op("rs_kernels::segment_matmul_bwd", mutates_args=())
def segment_matmul_bwd(grad_out: Tensor, w: Tensor, x: Tensor, cu_seqlens: Tensor) -> tuple[Tensor, Tensor]:
    """(dw (N, C), dx (N, D)) from dL/dout (B, C, D)."""
    from .kernels.mix import mix

    launch.check_launchable(x, "segment_matmul")
    w, x, g = w.contiguous(), x.contiguous(), grad_out.contiguous()
    cu = cu_seqlens.to(torch.int64).contiguous()
    (n, d), c = x.shape, w.shape[1]
    if c == 0:
        return torch.zeros_like(w), torch.zeros_like(x)
    dw, dx = launch.empty((n, c), w.dtype, x.device), launch.empty((n, d), x.dtype, x.device)
    with launch.device_ctx(x):
        mix(w, g, x, dx, cu, launch.block_table(cu, n), dz=dw)
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
    impl = resolve_impl(impl, x)
    if impl == "triton":
        return torch.ops.rs_kernels.segment_matmul_fwd(w, x, cu_seqlens)
    check_cu_seqlens(cu_seqlens, x.shape[0])
    return (padded if impl == "padded" else reference).segment_matmul(w, x, cu_seqlens)
