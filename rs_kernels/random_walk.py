"""Bipartite random walk of each video's snippets toward its representatives (Woodbury form).

Per video (docs/design.md, supplementary Eq. 10), x (T, D), representatives y (M, D):
  Z = softmax_m(tau n(y) n(x)^T) (M, T), c = Z 1, H = Z Z^T, P = Z x,
  G = H / (c + eps), Q = P / (c + eps)  (row-scaled), R = I - w^2 G,
  W = R^{-1} (w G y + Q), U = w y + w^2 W,   x* = (1 - w) x + (1 - w) Z^T U.
A video with M = 0 gets x* = (1 - w) x.

Triton path (``rs_kernels::random_walk_fwd`` / ``_bwd``), two streaming passes over x:
  pass 1 (``kernels/assign.py``): scores, Z (stored, N x Mmax, small), and the block
    partials of P, c, H, reduced per video in a fixed order;
  the (B, Mmax, Mmax) padded solve in torch (padded rows: H = 0, so R = I there and U = 0);
  pass 2 (``kernels/mix.py``): x* = (1 - w) (x + Z^T U).

Backward (gO = dL/dx*), from the forward's Z, c, G, Q, W and U (nothing of it solved again):
dU = (1 - w) Z gO (a streaming pass over gO, ``kernels/segment_matmul.py``), then M x M / M x D algebra in torch:
  dW = w^2 dU, dV = R^{-T} dW, dy = w dU + w G^T dV, dG = w^2 dV W^T + w dV y^T, dQ = dV,
  dH = dG / (c + eps), dP = dQ / (c + eps), dc = -(sum_j dG G + sum_d dQ Q) / (c + eps);
then one streaming pass (``kernels/assign.py``) with
  dZ_mt = (1 - w) <U_m, gO_t> + <dP_m, x_t> + ((dH + dH^T) Z)_mt + dc_m,
  dx_t = (1 - w) gO_t + sum_m Z_mt dP_m + (the path through the scores),
and dy gets the scores' part sum_t Cy_tm x_t - y_m beta_m / (|y_m| (|y_m| + eps)).
The custom ops import their kernels when they run: Triton is loaded on the Triton path only.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from . import padded, reference
from ._dispatch import resolve_impl
from .kernels import launch
from .padded import solve_walk_system
from .reference import MASS_EPS
from .varlen import BlockTable, Varlen, as_varlen, check_packed_meta, check_varlen, pad, unpad


def _check(x: Tensor, cu_seqlens: Tensor, y: Tensor, y_cu_seqlens: Tensor, w: float) -> None:
    """Shape, dtype and device checks (no data access: also run on fake tensors)."""
    if not 0 <= w < 1:
        raise ValueError(f"w must be in [0, 1) (the walk's series converges only then), got {w}")
    check_packed_meta(x, {"cu_seqlens": cu_seqlens, "y_cu_seqlens": y_cu_seqlens}, {"y": y})
    if y.dim() != 2 or y.shape[1] != x.shape[1]:
        raise ValueError(f"y must be (sum M_b, D) with D = {x.shape[1]}, got shape {tuple(y.shape)}")
    if y.dtype != x.dtype:
        raise ValueError(f"y must have x's dtype {x.dtype}, got {y.dtype}")
    if y_cu_seqlens.shape[0] != cu_seqlens.shape[0]:
        raise ValueError(f"y_cu_seqlens must have one offset per video like cu_seqlens ({cu_seqlens.shape[0]}), "
                         f"got {y_cu_seqlens.shape[0]}")


# ---------------------------------------------------------------------------------------------
# forward op
# ---------------------------------------------------------------------------------------------

def _stats_shapes(n, d, batch, max_m):
    """Z, c, G, Q, W, U: what the backward needs of the forward (none of it recomputed there)."""
    return (n, max_m), (batch, max_m), (batch, max_m, max_m), (batch, max_m, d), (batch, max_m, d), (batch, max_m, d)


@torch.library.custom_op("rs_kernels::random_walk_fwd", mutates_args=())
def random_walk_fwd(x: Tensor, cu_seqlens: Tensor, block_video: Tensor, block_first: Tensor, y: Tensor,
                    y_cu_seqlens: Tensor, max_m: int, w: float,
                    tau: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(x* (N, D), and for the backward: Z (N, max_m), c (B, max_m), G (B, max_m, max_m), Q, W, U (B, max_m, D)).

    block_video, block_first: the block table of x's offsets (``Varlen.block_table(launch.BLOCK_T)``).
    max_m >= max_b M_b (like flash-attention's max_seqlen) fixes the padded size of the solve. The
    caller (:func:`random_walk`) checks both offsets against the rows on the host; max_m is checked
    here on the device (an error on the CPU, a device-side assert on a GPU: no sync).
    """
    _check(x, cu_seqlens, y, y_cu_seqlens, w)
    torch._assert_async((y_cu_seqlens.diff() <= max_m).all(),
                        f"max_m = {max_m} is below the largest number of representatives of a video")
    from .kernels.assign import assign_fwd
    from .kernels.mix import mix

    launch.check_launchable(x, "random_walk")
    x, y = x.contiguous(), y.contiguous()
    cu, ycu = cu_seqlens.contiguous(), y_cu_seqlens.contiguous()
    n, d = x.shape
    batch = cu.numel() - 1
    acc = launch.acc_dtype(x.dtype)
    if max_m == 0:
        return ((1 - w) * x, *(x.new_zeros(s, dtype=acc) for s in _stats_shapes(n, d, batch, 0)))
    table = BlockTable(block_video, block_first)
    y_pad = pad(y.to(acc), ycu, max_m)
    z = launch.empty((n, max_m), acc, x.device)
    out = launch.empty((n, d), x.dtype, x.device)
    with launch.device_ctx(x):
        stats = assign_fwd(x, y_pad, cu, table, tau, cmax=max_m, stride_cb=max_m * d, ccu=ycu, z=z, with_h=True)
        md = max_m * d
        p = stats[:, :md].reshape(batch, max_m, d)
        c = stats[:, md:md + max_m].clone()  # an own copy: outputs of a custom op may not alias each other
        h = stats[:, md + max_m:].reshape(batch, max_m, max_m)
        ce = (c + MASS_EPS).unsqueeze(-1)
        g, q = h / ce, p / ce
        eye = torch.eye(max_m, dtype=acc, device=x.device)
        wsol = solve_walk_system(eye - (w * w) * g, w * (g @ y_pad) + q).contiguous()  # LAPACK leaves it column-major
        u = w * y_pad + (w * w) * wsol
        mix(z, u, x, out, cu, table, coef=1 - w, add_x=True)
    return out, z, c, g, q, wsol, u


@random_walk_fwd.register_fake
def _(x, cu_seqlens, block_video, block_first, y, y_cu_seqlens, max_m, w, tau):
    _check(x, cu_seqlens, y, y_cu_seqlens, w)
    n, d = x.shape
    acc = launch.acc_dtype(x.dtype)
    return (torch.empty_like(x),
            *(x.new_empty(s, dtype=acc) for s in _stats_shapes(n, d, cu_seqlens.shape[0] - 1, max_m)))


# ---------------------------------------------------------------------------------------------
# backward op
# ---------------------------------------------------------------------------------------------

@torch.library.custom_op("rs_kernels::random_walk_bwd", mutates_args=())
def random_walk_bwd(grad_out: Tensor, x: Tensor, cu_seqlens: Tensor, block_video: Tensor, block_first: Tensor,
                    y: Tensor, y_cu_seqlens: Tensor, z: Tensor, c: Tensor, g: Tensor, q: Tensor, wsol: Tensor,
                    u: Tensor, w: float, tau: float) -> tuple[Tensor, Tensor]:
    """(dx (N, D), dy (sum M_b, D)) from dL/dx* and what the forward saved."""
    from .kernels.assign import assign_bwd, norm_grad_coef
    from .kernels.segment_matmul import segment_matmul

    launch.check_launchable(x, "random_walk")
    x, y, gout = x.contiguous(), y.contiguous(), grad_out.contiguous()
    cu, ycu = cu_seqlens.contiguous(), y_cu_seqlens.contiguous()
    n, d = x.shape
    batch, max_m = cu.numel() - 1, z.shape[1]
    acc = launch.acc_dtype(x.dtype)
    if max_m == 0:
        return (1 - w) * gout.to(x.dtype), torch.zeros_like(y)
    z = z.contiguous()
    table = BlockTable(block_video, block_first)
    y_pad = pad(y.to(acc), ycu, max_m)
    dx = launch.empty((n, d), x.dtype, x.device)
    with launch.device_ctx(x):
        zg = segment_matmul(z, gout, cu, table)  # Z gO, with the forward's Z
        du = (1 - w) * zg.view(batch, max_m, d)
        ce = (c + MASS_EPS).unsqueeze(-1)
        rmat = torch.eye(max_m, dtype=acc, device=x.device) - (w * w) * g
        dv = solve_walk_system(rmat.transpose(-1, -2), (w * w) * du)
        dy_pad = w * du + w * (g.transpose(-1, -2) @ dv)
        dg = (w * w) * (dv @ wsol.transpose(-1, -2)) + w * (dv @ y_pad.transpose(-1, -2))
        dh = dg / ce
        dcm = (-((dg * g).sum(-1) + (dv * q).sum(-1)) / ce.squeeze(-1)).contiguous()
        dp = (dv / ce).contiguous()
        hs = (dh + dh.transpose(-1, -2)).contiguous()
        stats = assign_bwd(x, y_pad, dp, dcm, dx, cu, table, tau, ccu=ycu, g=gout, u=u.contiguous(),
                           coef_g=1 - w, hs=hs, z=z)
        e, beta = stats[:, :max_m * d].view(batch, max_m, d), stats[:, max_m * d:]
        dy_pad = dy_pad + e - y_pad * norm_grad_coef(y_pad, beta).unsqueeze(-1)
    return dx, unpad(dy_pad, ycu, y.shape[0]).to(y.dtype)


@random_walk_bwd.register_fake
def _(grad_out, x, cu_seqlens, block_video, block_first, y, y_cu_seqlens, z, c, g, q, wsol, u, w, tau):
    return torch.empty_like(x), torch.empty_like(y)


def _setup_context(ctx, inputs, output):
    x, cu_seqlens, block_video, block_first, y, y_cu_seqlens, max_m, w, tau = inputs
    _, *saved = output
    ctx.save_for_backward(x, cu_seqlens, block_video, block_first, y, y_cu_seqlens, *saved)
    ctx.w, ctx.tau = w, tau
    ctx.mark_non_differentiable(*saved)


def _backward(ctx, grad_out, *_grads_of_saved):
    if grad_out is None:
        return (None,) * 9
    dx, dy = torch.ops.rs_kernels.random_walk_bwd(grad_out, *ctx.saved_tensors, ctx.w, ctx.tau)
    return dx, None, None, None, dy, None, None, None, None


random_walk_fwd.register_autograd(_backward, setup_context=_setup_context)


# FLOPs as the kernels do them (2 per multiply-add). The per-video M_b are not in the shapes: M is
# taken as the mean sum M_b / B (exact when every video has the same count), padded to max_m in the solve.
def _mean_m(y_shape, cu_shape) -> float:
    return y_shape[0] / max(cu_shape[0] - 1, 1)


def _solve_flops(batch, m, d) -> int:
    return int(batch * (2 * m ** 3 / 3 + 2 * m * m * d))


@register_flop_formula(torch.ops.rs_kernels.random_walk_fwd)
def _rw_fwd_flops(x_shape, cu_shape, video_shape, first_shape, y_shape, ycu_shape, max_m, *args, **kwargs) -> int:
    n, d = x_shape
    m, batch = _mean_m(y_shape, cu_shape), cu_shape[0] - 1
    # scores, Z^T x, Z^T Z (pass 1); G y and the solve; Z U (pass 2)
    return int(6 * n * m * d + 2 * n * m * m) + _solve_flops(batch, max_m, d) + 2 * batch * max_m * max_m * d


@register_flop_formula(torch.ops.rs_kernels.random_walk_bwd)
def _rw_bwd_flops(grad_shape, x_shape, cu_shape, video_shape, first_shape, y_shape, ycu_shape, z_shape, *args,
                  **kwargs) -> int:
    n, d = x_shape
    m, batch, max_m = _mean_m(y_shape, cu_shape), cu_shape[0] - 1, z_shape[1]
    # Z gO; x y^T, x dP^T, gO U^T; Z Hs; Z dP, Cy y, Cy^T x; the small algebra (one solve, three products)
    return int(16 * n * m * d + 2 * n * m * m) + _solve_flops(batch, max_m, d) + 6 * batch * max_m * max_m * d


# ---------------------------------------------------------------------------------------------
# public function
# ---------------------------------------------------------------------------------------------

def random_walk(x: Tensor, cu_seqlens: Varlen | Tensor, y: Tensor, y_cu_seqlens: Varlen | Tensor, w: float = 0.5,
                tau: float = 5.0, impl: str | None = None) -> Tensor:
    """X* (N, D); video b walks toward y[y_cu_seqlens[b]:y_cu_seqlens[b+1]].

    Each offsets argument: a :class:`~rs_kernels.varlen.Varlen`, or an offsets tensor (then read once).
    """
    seqs, yseqs = as_varlen(cu_seqlens), as_varlen(y_cu_seqlens)
    _check(x, seqs.cu_seqlens, y, yseqs.cu_seqlens, w)
    check_varlen(seqs, x.shape[0])
    ms = check_varlen(yseqs, y.shape[0], name="y_cu_seqlens", allow_empty=True)
    impl = resolve_impl(impl, x)
    if impl == "triton":
        table = seqs.block_table(launch.BLOCK_T)
        return torch.ops.rs_kernels.random_walk_fwd(x, seqs.cu_seqlens, *table, y, yseqs.cu_seqlens, max(ms),
                                                    float(w), float(tau))[0]
    return (padded if impl == "padded" else reference).random_walk(x, seqs, y, yseqs, w, tau)
