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
from .varlen import BlockTable, Varlen, as_varlen, check_packed_meta, check_varlen


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
def segment_matmul_fwd(w: Tensor, x: Tensor, cu_seqlens: Tensor, block_video: Tensor, block_first: Tensor) -> Tensor:
    """(B, C, D) per-video W^T X; the offsets' block table as in ``rs_kernels::em_attention_fwd``."""
    from .kernels import segment_matmul as kernel

    _check(w, x, cu_seqlens)
    launch.check_launchable(x, "segment_matmul")
    w, x = w.contiguous(), x.contiguous()
    cu = cu_seqlens.contiguous()
    d, c, batch = x.shape[1], w.shape[1], cu.numel() - 1
    if c == 0:
        return x.new_zeros(batch, 0, d)
    with launch.device_ctx(x):
        sums = kernel.segment_matmul(w, x, cu, BlockTable(block_video, block_first))
    return sums.view(batch, c, d).to(x.dtype)


@segment_matmul_fwd.register_fake
def _(w, x, cu_seqlens, block_video, block_first):
    _check(w, x, cu_seqlens)
    return x.new_empty(cu_seqlens.shape[0] - 1, w.shape[1], x.shape[1])


@torch.library.custom_op("rs_kernels::segment_matmul_bwd", mutates_args=())
def segment_matmul_bwd(grad_out: Tensor, w: Tensor, x: Tensor, cu_seqlens: Tensor, block_video: Tensor,
                       block_first: Tensor) -> tuple[Tensor, Tensor]:
    """(dw (N, C), dx (N, D)) from dL/dout (B, C, D)."""
    from .kernels.mix import mix

    launch.check_launchable(x, "segment_matmul")
    w, x, g = w.contiguous(), x.contiguous(), grad_out.contiguous()
    cu = cu_seqlens.contiguous()
    (n, d), c = x.shape, w.shape[1]
    if c == 0:
        return torch.zeros_like(w), torch.zeros_like(x)
    dw, dx = launch.empty((n, c), w.dtype, x.device), launch.empty((n, d), x.dtype, x.device)
    with launch.device_ctx(x):
        mix(w, g, x, dx, cu, BlockTable(block_video, block_first), dz=dw)
    return dw, dx


@segment_matmul_bwd.register_fake
def _(grad_out, w, x, cu_seqlens, block_video, block_first):
    return torch.empty_like(w), torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_out):
    dw, dx = torch.ops.rs_kernels.segment_matmul_bwd(grad_out, *ctx.saved_tensors)
    return dw, dx, None, None, None


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

def segment_matmul(w: Tensor, x: Tensor, cu_seqlens: Varlen | Tensor, impl: str | None = None) -> Tensor:
    """(B, C, D): out[b] = w[rows of b]^T x[rows of b], for w (N, C) and x (N, D) packed alike.

    cu_seqlens: a :class:`~rs_kernels.varlen.Varlen`, or an offsets tensor (then read once).
    """
    seqs = as_varlen(cu_seqlens)
    _check(w, x, seqs.cu_seqlens)
    check_varlen(seqs, x.shape[0])
    impl = resolve_impl(impl, x)
    if impl == "triton":
        return torch.ops.rs_kernels.segment_matmul_fwd(w, x, seqs.cu_seqlens, *seqs.block_table(launch.BLOCK_T))
    return (padded if impl == "padded" else reference).segment_matmul(w, x, seqs)
