"""The specification in code: EM attention, the bipartite random walk, the per-video W^T X (the
head's class-wise pooling) and w^T X (its class-agnostic pooling) on packed input, and the
memory-bank ops.

Plain PyTorch, one video at a time, float64-capable, no tricks: every faster implementation in
this package is tested against these functions. docs/design.md states the math; the names follow it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .varlen import segment_sum, split

NORM_EPS = 1e-9  # n(v) = v / (||v||_2 + 1e-9), as the official code
MASS_EPS = 1e-9  # the column sums of the assignments get the same guard


def l2_normalize(v: Tensor) -> Tensor:
    return v / (v.norm(dim=-1, keepdim=True) + NORM_EPS)


def assignments(x: Tensor, centres: Tensor, tau: float) -> Tensor:
    """Z (M, T): softmax over the M centres of tau times the cosine similarity to each snippet."""
    return torch.softmax(tau * l2_normalize(centres) @ l2_normalize(x).T, dim=0)


def em_attention_video(x: Tensor, mu: Tensor, iters: int, tau: float) -> Tensor:
    """Representatives (K, D) of one video's snippets x (T, D), starting from mu (K, D)."""
    for _ in range(iters):
        z = assignments(x, mu, tau)
        mu = (z @ x) / (z.sum(dim=1, keepdim=True) + MASS_EPS)
    return mu


def em_attention(x: Tensor, cu_seqlens: Tensor, mu0: Tensor, iters: int = 2, tau: float = 5.0) -> Tensor:
    """mu (B, K, D) for packed x (N, D); mu0 is (K, D), shared by all videos, or (B, K, D)."""
    videos = split(x, cu_seqlens)
    mu0 = mu0.expand(len(videos), *mu0.shape[-2:])
    return torch.stack([em_attention_video(xb, mu0[b], iters, tau) for b, xb in enumerate(videos)])


def random_walk_dense_video(x: Tensor, y: Tensor, w: float, tau: float) -> Tensor:
    """Supplementary Eq. 10: X* = (1-w) (I - w^2 Z^T N)^{-1} (w Z^T Y + X), a T x T solve."""
    z = assignments(x, y, tau)
    n = z / (z.sum(dim=1, keepdim=True) + MASS_EPS)
    eye = torch.eye(x.shape[0], dtype=x.dtype, device=x.device)
    return (1 - w) * torch.linalg.solve(eye - w * w * (z.T @ n), w * (z.T @ y) + x)


def random_walk_woodbury_video(x: Tensor, y: Tensor, w: float, tau: float) -> Tensor:
    """Eq. 10 through the Woodbury identity: only an M x M solve, O(T M D) work."""
    z = assignments(x, y, tau)
    n = z / (z.sum(dim=1, keepdim=True) + MASS_EPS)
    g = n @ z.T  # (M, M)
    q = n @ x  # (M, D)
    eye = torch.eye(y.shape[0], dtype=x.dtype, device=x.device)
    u = w * y + w * w * torch.linalg.solve(eye - w * w * g, w * (g @ y) + q)
    return (1 - w) * x + (1 - w) * (z.T @ u)


def random_walk(
    x: Tensor, cu_seqlens: Tensor, y: Tensor, y_cu_seqlens: Tensor, w: float = 0.5, tau: float = 5.0,
    method: str = "woodbury",
) -> Tensor:
    """X* (N, D): each video's snippets propagated toward its representatives.

    y (sum M_b, D) holds video b's representatives at rows ``y_cu_seqlens[b]:y_cu_seqlens[b+1]``.
    A video with no representative (M_b = 0) gets X* = (1-w) X, the limit of Eq. 10.
    """
    video_fn = {"woodbury": random_walk_woodbury_video, "dense": random_walk_dense_video}[method]
    pairs = zip(split(x, cu_seqlens), split(y, y_cu_seqlens))
    return torch.cat([video_fn(xb, yb, w, tau) for xb, yb in pairs])


def segment_matmul(w: Tensor, x: Tensor, cu_seqlens: Tensor) -> Tensor:
    """(B, C, D): w_b^T x_b for each video b of packed weights w (N, C) and snippets x (N, D)."""
    return torch.stack([wb.T @ xb for wb, xb in zip(split(w, cu_seqlens), split(x, cu_seqlens))])


def segment_weighted_sum(w: Tensor, x: Tensor, cu_seqlens: Tensor) -> Tensor:
    """(B, D): sum_t w_t x_t over the rows of each video b, for w (N,) and x (N, D) packed alike."""
    return segment_sum(w[:, None] * x, cu_seqlens)


# --- Class-wise memory bank (docs/design.md): the spec of the csrc/ extension's ops ----------
# A bank is (C, S, D) rows with (C, S) scores and (C,) int64 fill counts. Slots 0..count-1 of a
# class are filled, in descending score order; unfilled slots hold zero rows and zero scores.


def membank_gather(bank: Tensor, count: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """The filled slots of each video's classes, in ascending class order, packed: (y, y_cu_seqlens)."""
    slots = bank.shape[1]
    filled = torch.arange(slots, device=bank.device) < count[:, None]  # (C, S)
    take = labels.bool()[:, :, None] & filled[None]  # (B, C, S)
    _, c, s = take.nonzero(as_tuple=True)  # row-major: video, then class, then slot
    per_video = take.flatten(1).sum(1)
    return bank[c, s], torch.cat([per_video.new_zeros(1), per_video.cumsum(0)])


def membank_insert_topk_(bank: Tensor, scores: Tensor, count: Tensor, cand: Tensor, cand_scores: Tensor,
                         labels: Tensor) -> None:
    """For each class, keep the top S by score of (its filled slots, then every labelled video's K candidates).

    cand (B, K, D), cand_scores (B, K, C), labels (B, C). Ties keep pool order (current slots,
    then video order, then k): a stable sort makes the result equal to inserting the videos one
    at a time. Updates bank, scores and count in place.
    """
    n_class, slots, dim = bank.shape
    batch, k = cand.shape[:2]
    slot_live = torch.arange(slots, device=bank.device) < count[:, None]  # (C, S)
    cand_live = labels.bool().T[:, :, None].expand(n_class, batch, k).reshape(n_class, batch * k)
    live = torch.cat([slot_live, cand_live], dim=1)
    pool_scores = torch.cat([scores, cand_scores.permute(2, 0, 1).reshape(n_class, batch * k).to(scores.dtype)], dim=1)
    ranked = torch.sort(pool_scores.masked_fill(~live, float("-inf")), dim=1, descending=True, stable=True)
    order = ranked.indices[:, :slots]  # (C, S) positions in the pool
    class_base = torch.arange(n_class, device=bank.device)[:, None] * slots
    source_row = torch.where(order < slots, class_base + order, n_class * slots + order - slots)
    rows = torch.cat([bank.reshape(n_class * slots, dim), cand.reshape(batch * k, dim).to(bank.dtype)])
    new_count = torch.clamp(count + cand_live.sum(1), max=slots)
    keep = torch.arange(slots, device=bank.device) < new_count[:, None]
    bank.copy_(rows[source_row] * keep[:, :, None])
    scores.copy_(torch.where(keep, ranked.values[:, :slots], torch.zeros_like(scores)))
    count.copy_(new_count)


def membank_gather_insert_(bank: Tensor, scores: Tensor, count: Tensor, cand: Tensor, cand_scores: Tensor,
                           labels: Tensor) -> tuple[Tensor, Tensor]:
    """The official per-video order: each video reads its classes' filled slots, then inserts its candidates.

    Video b reads the bank after the inserts of videos 0..b-1; returns the reads packed as
    membank_gather's (y, y_cu_seqlens) and leaves every insert in bank, scores and count.
    """
    reads = [bank.new_empty(0, bank.shape[2])]
    per_video = [count.new_zeros(1)]
    for b in range(labels.shape[0]):
        y, y_cu = membank_gather(bank, count, labels[b:b + 1])
        reads.append(y)
        per_video.append(y_cu[1:])
        membank_insert_topk_(bank, scores, count, cand[b:b + 1], cand_scores[b:b + 1], labels[b:b + 1])
    return torch.cat(reads), torch.cat(per_video).cumsum(0)


def membank_momentum_(bank: Tensor, index: Tensor, cand: Tensor, m: float) -> None:
    """Per-video bank (V, K, D): slot k of video index[b] <- m slot k + (1 - m) cand[b, k], in batch order."""
    for b in range(index.numel()):  # sequential, so a video twice in one batch is updated twice
        v = int(index[b])
        bank[v] = m * bank[v] + (1 - m) * cand[b].to(bank.dtype)
