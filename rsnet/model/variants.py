"""The variants of supplementary Tables 2 and 3 (docs/design.md, 'Variants of Tables 2 and 3').

Each variant is one small function (or, for the video-wise bank, one module) named for what it
computes; the model, the losses and the trainer call it from one place, picked by the config's
switches (``representatives``, ``bank``, ``propagation_loss``, ``fusion``), whose defaults are
the paper's method.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from rs_kernels.varlen import Varlen, as_varlen, max_seqlen, pad, seqlens, split

if TYPE_CHECKING:
    from .head import Prediction

Representatives = tuple[Tensor, Varlen]  # packed rows (sum M_b, D) and their offsets: what a walk goes toward


class OnlineSummary(NamedTuple):
    """What a video's online representatives are and which features the walks move."""

    mu: Tensor  # (B, K, D) the online representatives
    walk_input: Tensor  # (N, D) the features the walks move: X, or its foreground or background part
    kept: Tensor | None  # (N, D) the part added back after each walk, untouched by it; None: nothing
    main: Prediction | None  # the main branch's Prediction when the summary needed it first, else None


def split_by_foreground(x: Tensor, foreground: Tensor, part: str) -> tuple[Tensor, Tensor]:
    """(walk_input, kept): ``(X S_f, X (1 - S_f))`` for part ``foreground``, the swap for ``background``.

    ``foreground`` (N,) is S_f, one score in [0, 1] per snippet; each snippet's row is scaled by it.
    """
    fore = x * foreground[:, None]
    back = x * (1 - foreground)[:, None]
    return (fore, back) if part == "foreground" else (back, fore)


def _ranked_rows(score: Tensor, cu_seqlens: Varlen, k: int, descending: bool) -> Tensor:
    """(B, k) packed row of each video's first k snippets by score; a video of T < k repeats its T-th."""
    width = max_seqlen(cu_seqlens)
    padded = pad(score, cu_seqlens, width, float("-inf") if descending else float("inf"))
    order = torch.sort(padded, dim=1, descending=descending, stable=True).indices  # padding ranks last
    last = (seqlens(cu_seqlens) - 1)[:, None]
    rank = torch.minimum(torch.arange(k, device=score.device)[None], last)
    return cu_seqlens.cu_seqlens[:-1, None] + order.gather(1, rank)


def top_and_bottom_snippets(x: Tensor, score: Tensor, cu_seqlens: Varlen | Tensor, k: int) -> Tensor:
    """(B, 2k, D): each video's k highest-scoring snippets (highest first), then its k lowest (lowest first).

    The representatives of Table 2's "representative snippets of high scores": snippet features, no
    EM. Ties keep snippet order. A video shorter than k repeats its last-ranked snippet to fill its
    k rows, and one shorter than 2k has snippets in both halves, so every video has 2k rows.
    """
    cu_seqlens = as_varlen(cu_seqlens)
    rows = torch.cat([_ranked_rows(score, cu_seqlens, k, descending=True),
                      _ranked_rows(score, cu_seqlens, k, descending=False)], dim=1)
    return x[rows]


def joined_representatives(online: Representatives, memory: Representatives) -> Representatives:
    """Per video, its online rows then its memory-bank rows, packed: the one walk target of early fusion."""
    (mu, mu_cu), (y, y_cu) = online, (memory[0], as_varlen(memory[1]))
    pieces = [rows for pair in zip(split(mu, mu_cu), split(y, y_cu), strict=True) for rows in pair]
    lengths = [a + b for a, b in zip(mu_cu.lengths, y_cu.lengths, strict=True)]
    return torch.cat(pieces), Varlen.from_lengths(lengths, mu.device)


def walk_targets(online: Representatives, memory: Representatives | None, fusion: str) -> list[Representatives]:
    """The representatives of each walk, hence of each branch after the main one.

    Without memory, the intra-video walk alone. Late fusion (the paper's): an intra-video walk
    toward the online representatives and an inter-video walk toward the bank's, two branches.
    Early fusion: one walk toward both sets joined, one branch.
    """
    if memory is None:
        return [online]
    if fusion == "early":
        return [joined_representatives(online, memory)]
    return [online, memory]


def add_kept(walked: Tensor, kept: Tensor | None) -> Tensor:
    """The updated features: the walk's output plus the part of X it did not move."""
    return walked if kept is None else walked + kept
