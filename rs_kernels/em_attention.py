"""EM attention: K representative snippets per video (docs/design.md), as a differentiable custom op.

Per video, per iteration: Z = softmax_k(tau n(mu) n(x)^T) (K, T); mu <- (Z x) / (sum_t Z + 1e-9).

Triton path (``rs_kernels::em_attention_fwd`` / ``_bwd``): each iteration is one streaming pass
over x (``kernels/assign.py``: norms, scores, softmax over K, the block's Z^T x and
sum Z) plus a fixed-order per-video reduction of the block partials; the division by the mass is
a (B, K, D) torch op. The forward keeps every iterate mu_i and mass c_i (tiny); the backward
recomputes Z from x and mu_i (cheaper than storing N x K per iteration and reading it back).

Backward, per iteration from the last (g = dL/dmu_{i+1}, c = sum_t Z, A = Z x, mu_{i+1} = A / (c + eps)):
  dA_k = g_k / (c_k + eps)          dc_k = -<g_k, mu_{i+1,k}> / (c_k + eps)
  dZ_kt = <dA_k, x_t> + dc_k        dx_t += sum_k Z_kt dA_k
and through the scores (``kernels/assign.py``, ``_score_grad``): dx_t += sum_k Cy_tk mu_k - alpha_t x_t,
  dmu_i,k = sum_t Cy_tk x_t - mu_k beta_k / (|mu_k| (|mu_k| + eps)).
x receives a term from every iteration (the kernel adds into dx after the first).
The custom ops import their kernels when they run: Triton is loaded on the Triton path only.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from . import padded, reference
from ._dispatch import resolve_impl
from .kernels import launch
from .reference import MASS_EPS
from .varlen import BlockTable, Varlen, as_varlen, check_packed_meta, check_varlen


def _check(x: Tensor, cu_seqlens: Tensor, mu0: Tensor, iters: int) -> None:
    """Shape, dtype and device checks (no data access: also run on fake tensors)."""
    check_packed_meta(x, {"cu_seqlens": cu_seqlens}, {"mu0": mu0})
    if mu0.dim() not in (2, 3) or mu0.shape[-1] != x.shape[1]:
        raise ValueError(f"mu0 must be (K, D) or (B, K, D) with D = {x.shape[1]}, got shape {tuple(mu0.shape)}")
    if mu0.shape[-2] < 1:
        raise ValueError("mu0 must hold at least one centre (K >= 1)")
    if mu0.dim() == 3 and mu0.shape[0] != cu_seqlens.shape[0] - 1:
        raise ValueError(f"mu0 is (B, K, D) with B = {mu0.shape[0]}, but cu_seqlens holds {cu_seqlens.shape[0] - 1} videos")
    if mu0.dtype != x.dtype:
        raise ValueError(f"mu0 must have x's dtype {x.dtype}, got {mu0.dtype}")
    if not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be a non-negative int, got {iters!r}")


# ---------------------------------------------------------------------------------------------
# forward op
# ---------------------------------------------------------------------------------------------

@torch.library.custom_op("rs_kernels::em_attention_fwd", mutates_args=())
def em_attention_fwd(x: Tensor, cu_seqlens: Tensor, block_video: Tensor, block_first: Tensor, mu0: Tensor, iters: int,
                     tau: float) -> tuple[Tensor, Tensor, Tensor]:
    """(mu (B, K, D), mus (iters+1, B, K, D) every iterate in fp32/fp64, cs (iters, B, K) the masses).

    block_video, block_first: the offsets' block table (``Varlen.block_table(launch.BLOCK_T)``);
    the offsets are checked against the rows by the caller (:func:`em_attention`).
    """
    from .kernels.assign import assign_fwd

    _check(x, cu_seqlens, mu0, iters)
    launch.check_launchable(x, "em_attention")
    x = x.contiguous()
    cu = cu_seqlens.contiguous()
    mu0 = mu0.contiguous()
    n, d = x.shape
    batch, k = cu.numel() - 1, mu0.shape[-2]
    acc = launch.acc_dtype(x.dtype)
    mus = launch.empty((iters + 1, batch, k, d), acc, x.device)
    cs = launch.empty((iters, batch, k), acc, x.device)
    mus[0] = mu0
    table = BlockTable(block_video, block_first)
    with launch.device_ctx(x):
        mu, stride = mu0, (0 if mu0.dim() == 2 else k * d)
        for i in range(iters):
            stats = assign_fwd(x, mu, cu, table, tau, cmax=k, stride_cb=stride)
            c = stats[:, k * d:]
            cs[i] = c
            mu = stats[:, :k * d].view(batch, k, d) / (c + MASS_EPS).unsqueeze(-1)
            mus[i + 1] = mu
            stride = k * d
    return mus[iters].to(x.dtype, copy=True), mus, cs


@em_attention_fwd.register_fake
def _(x, cu_seqlens, block_video, block_first, mu0, iters, tau):
    _check(x, cu_seqlens, mu0, iters)
    batch, k, d = cu_seqlens.shape[0] - 1, mu0.shape[-2], x.shape[1]
    acc = launch.acc_dtype(x.dtype)
    return (x.new_empty(batch, k, d), x.new_empty(iters + 1, batch, k, d, dtype=acc),
            x.new_empty(iters, batch, k, dtype=acc))


# ---------------------------------------------------------------------------------------------
# backward op
# ---------------------------------------------------------------------------------------------

@torch.library.custom_op("rs_kernels::em_attention_bwd", mutates_args=())
def em_attention_bwd(grad_mu: Tensor, x: Tensor, cu_seqlens: Tensor, block_video: Tensor, block_first: Tensor,
                     mus: Tensor, cs: Tensor, tau: float, shared: bool) -> tuple[Tensor, Tensor]:
    """(dx (N, D), dmu0 ((K, D) if shared else (B, K, D))) from dL/dmu and the saved iterates."""
    from .kernels.assign import assign_bwd, norm_grad_coef

    launch.check_launchable(x, "em_attention")
    x = x.contiguous()
    cu = cu_seqlens.contiguous()
    iters = cs.shape[0]
    n, d = x.shape
    acc = launch.acc_dtype(x.dtype)
    g = grad_mu.to(acc, copy=True).contiguous()
    table = BlockTable(block_video, block_first)
    dx = launch.empty((n, d), acc, x.device) if iters > 0 else torch.zeros(n, d, dtype=acc, device=x.device)
    batch, k = g.shape[0], g.shape[1]
    with launch.device_ctx(x):
        for i in reversed(range(iters)):
            ce = cs[i] + MASS_EPS
            mu_i = mus[i].contiguous()
            pa = (g / ce.unsqueeze(-1)).contiguous()  # dA
            dcm = (-(g * mus[i + 1]).sum(-1) / ce).contiguous()  # dc
            stats = assign_bwd(x, mu_i, pa, dcm, dx, cu, table, tau, accumulate=i != iters - 1)
            e, beta = stats[:, :k * d].view(batch, k, d), stats[:, k * d:]
            g = e - mu_i * norm_grad_coef(mu_i, beta).unsqueeze(-1)
    dmu0 = g.sum(0) if shared else g
    return dx.to(x.dtype), dmu0.to(x.dtype)


@em_attention_bwd.register_fake
def _(grad_mu, x, cu_seqlens, block_video, block_first, mus, cs, tau, shared):
    dmu0 = grad_mu.new_empty(grad_mu.shape[1:]) if shared else grad_mu.new_empty(grad_mu.shape)
    return torch.empty_like(x), dmu0.to(x.dtype)


def _setup_context(ctx, inputs, output):
    x, cu_seqlens, block_video, block_first, mu0, iters, tau = inputs
    _, mus, cs = output
    ctx.save_for_backward(x, cu_seqlens, block_video, block_first, mus, cs)
    ctx.tau, ctx.shared = tau, mu0.dim() == 2
    ctx.mark_non_differentiable(mus, cs)


def _backward(ctx, grad_mu, _grad_mus, _grad_cs):
    if grad_mu is None:
        return (None,) * 7
    dx, dmu0 = torch.ops.rs_kernels.em_attention_bwd(grad_mu, *ctx.saved_tensors, ctx.tau, ctx.shared)
    return dx, None, None, None, dmu0, None, None


em_attention_fwd.register_autograd(_backward, setup_context=_setup_context)


# FLOPs as the kernels do them (2 per multiply-add of the dots; norms and softmax not counted).
@register_flop_formula(torch.ops.rs_kernels.em_attention_fwd)
def _em_fwd_flops(x_shape, cu_shape, video_shape, first_shape, mu0_shape, iters, tau, *args, **kwargs) -> int:
    n, d = x_shape
    return iters * 4 * n * mu0_shape[-2] * d  # scores x mu^T and Z^T x


@register_flop_formula(torch.ops.rs_kernels.em_attention_bwd)
def _em_bwd_flops(grad_shape, x_shape, cu_shape, video_shape, first_shape, mus_shape, cs_shape, *args, **kwargs) -> int:
    n, d = x_shape
    return cs_shape[0] * 10 * n * grad_shape[1] * d  # x mu^T, x dA^T, Z dA, Cy mu, Cy^T x


# ---------------------------------------------------------------------------------------------
# public function
# ---------------------------------------------------------------------------------------------

def em_attention(x: Tensor, cu_seqlens: Varlen | Tensor, mu0: Tensor, iters: int = 2, tau: float = 5.0,
                 impl: str | None = None) -> Tensor:
    """mu (B, K, D) from packed snippets x (N, D); mu0 (K, D) shared by all videos or (B, K, D).

    cu_seqlens: the batch's :class:`~rs_kernels.varlen.Varlen`, or its offsets tensor (then read once).
    """
    seqs = as_varlen(cu_seqlens)
    _check(x, seqs.cu_seqlens, mu0, iters)
    check_varlen(seqs, x.shape[0])
    impl = resolve_impl(impl, x)
    if impl == "triton":
        if iters == 0:
            return mu0.expand(seqs.batch_size, *mu0.shape[-2:]).clone()
        table = seqs.block_table(launch.BLOCK_T)
        return torch.ops.rs_kernels.em_attention_fwd(x, seqs.cu_seqlens, *table, mu0, iters, float(tau))[0]
    return (padded if impl == "padded" else reference).em_attention(x, seqs, mu0, iters, tau)
