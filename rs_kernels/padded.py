"""The ops in batched PyTorch: every video of a batch padded to the longest, masked, no loop.

What a user writes without kernels (the issues' "padded eager" baseline): x (N, D) becomes
(B, T_max, D), the B videos' assignments one batched product, the random walk's M x M systems
one batched solve. It is also the form ``torch.compile`` handles best (no per-video Python loop,
shapes that vary in T_max and M_max only), so the benchmarks compile this form, not the
reference's loop. ``impl="padded"`` selects it; it computes the same math as :mod:`reference`
(the Woodbury walk) and is tested equal to it. Autograd differentiates it as it stands.

The ``*_padded`` functions hold the math on already padded tensors (what ``torch.compile`` gets
in the benchmarks); the packed-input ops pad, call them and unpad.

Cost: it reads and writes the padded (B, T_max, D) copy, so with mixed lengths it moves
B * T_max / N times the bytes of the packed ops.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .reference import MASS_EPS, l2_normalize
from .varlen import Varlen, max_seqlen, pad, seqlens, unpad


def solve_walk_system(r: Tensor, b: Tensor) -> Tensor:
    """R^{-1} b for the walk's (B, M, M) systems, without torch.linalg.solve's singularity check
    (a host sync on a GPU).

    R = I - w^2 G is never singular: row m of G = H / (c + eps) sums to c_m / (c_m + eps) < 1
    (each snippet's assignments sum to 1) and 0 <= w < 1, so R is strictly diagonally dominant
    (and R = I on the padded rows). Half-precision systems are solved in float32: LAPACK and
    cuSOLVER have no half-precision LU.
    """
    if r.dtype in (torch.float16, torch.bfloat16):
        return torch.linalg.solve_ex(r.float(), b.float()).result.to(b.dtype)
    return torch.linalg.solve_ex(r, b).result


def padded_with_mask(values: Tensor, cu_seqlens: Varlen | Tensor) -> tuple[Tensor, Tensor]:
    """(B, L_max, ...) zero-padded rows and the (B, L_max) mask of the real ones."""
    width = max_seqlen(cu_seqlens)
    mask = torch.arange(width, device=values.device) < seqlens(cu_seqlens).unsqueeze(1)
    return pad(values, cu_seqlens, width), mask


def _normalized(v: Tensor, mask: Tensor) -> Tensor:
    """n(v), zero on the padded rows: there n(0) is 0/0 in float16, whose eps rounds to 0, and a NaN
    row would reach the real ones through the scores' product (forward and backward)."""
    return l2_normalize(v).masked_fill(~mask.unsqueeze(-1), 0.0)


def _assignments(x: Tensor, x_mask: Tensor, centres: Tensor, centre_mask: Tensor, tau: float) -> Tensor:
    """Z (B, M, T): softmax over each video's own centres, zero on padded centres and snippets.

    Padded centres get the dtype's lowest score rather than -inf, so a video without any centre
    gets a finite uniform softmax, which the mask then zeroes (no NaN, forward or backward)."""
    scores = tau * _normalized(centres, centre_mask) @ _normalized(x, x_mask).transpose(1, 2)
    scores = scores.masked_fill(~centre_mask.unsqueeze(-1), torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=1) * (centre_mask.unsqueeze(-1) & x_mask.unsqueeze(1))


def em_attention_padded(xp: Tensor, x_mask: Tensor, mu0: Tensor, iters: int, tau: float) -> Tensor:
    """mu (B, K, D) for padded videos xp (B, T_max, D) with x_mask (B, T_max) marking real snippets."""
    mu = mu0.expand(xp.shape[0], *mu0.shape[-2:])
    centre_mask = x_mask.new_ones(mu.shape[:2])
    for _ in range(iters):
        z = _assignments(xp, x_mask, mu, centre_mask, tau)
        mu = (z @ xp) / (z.sum(dim=2, keepdim=True) + MASS_EPS)
    return mu if iters else mu.clone(memory_format=torch.contiguous_format)  # a copy of mu0, as the others


def random_walk_padded(xp: Tensor, x_mask: Tensor, yp: Tensor, y_mask: Tensor, w: float, tau: float) -> Tensor:
    """X* (B, T_max, D) of padded videos toward padded representatives yp (B, M_max, D), y_mask (B, M_max)."""
    z = _assignments(xp, x_mask, yp, y_mask, tau)  # (B, M, T)
    mass = z.sum(dim=2, keepdim=True)
    n = z / torch.where(mass > 0, mass + MASS_EPS, 1.0)  # padded centres: 0, not 0/0 (float16's eps is 0)
    g = n @ z.transpose(1, 2)  # (B, M, M)
    q = n @ xp  # (B, M, D)
    eye = torch.eye(yp.shape[1], dtype=xp.dtype, device=xp.device)
    u = w * yp + w * w * solve_walk_system(eye - w * w * g, w * (g @ yp) + q)
    return (1 - w) * xp + (1 - w) * (z.transpose(1, 2) @ u)


def em_attention(x: Tensor, cu_seqlens: Varlen | Tensor, mu0: Tensor, iters: int = 2, tau: float = 5.0) -> Tensor:
    """mu (B, K, D) for packed x (N, D); mu0 is (K, D), shared by all videos, or (B, K, D)."""
    return em_attention_padded(*padded_with_mask(x, cu_seqlens), mu0, iters, tau)


def random_walk(x: Tensor, cu_seqlens: Varlen | Tensor, y: Tensor, y_cu_seqlens: Varlen | Tensor, w: float = 0.5,
                tau: float = 5.0) -> Tensor:
    """X* (N, D): each video's snippets propagated toward its representatives (Woodbury form)."""
    out = random_walk_padded(*padded_with_mask(x, cu_seqlens), *padded_with_mask(y, y_cu_seqlens), w, tau)
    return unpad(out, cu_seqlens, x.shape[0])


def segment_matmul(w: Tensor, x: Tensor, cu_seqlens: Varlen | Tensor) -> Tensor:
    """(B, C, D): w_b^T x_b for each video b, one batched product over the padded videos."""
    width = max_seqlen(cu_seqlens)
    return pad(w, cu_seqlens, width).transpose(1, 2) @ pad(x, cu_seqlens, width)
