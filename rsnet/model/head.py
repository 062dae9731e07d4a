"""The prediction head P(X): FAC-Net's class-agnostic attention and MIL heads (supplementary §1),
shared by the main, intra- and inter-video branches.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

import rs_kernels
from rs_kernels.reference import l2_normalize
from rs_kernels.varlen import Varlen, as_varlen, segment_ids, segment_sum

ATT_MASS_EPS = 1e-5  # abar = a / (sum_t a + 1e-5), as the official code


class Prediction(NamedTuple):
    """P(X) of a packed batch: video probabilities (B, C+1) of both heads, attention (N,), logits (N, C+1)."""

    p_ca: Tensor
    p_cw: Tensor | None  # None where the class-wise pooling was left out (scoring videos)
    attention: Tensor
    logits: Tensor


class PredictionModule(nn.Module):
    """FAC-Net's class-agnostic attention head and MIL head (supplementary §1)."""

    def __init__(self, n_classes: int, dim: int, scale: float):
        super().__init__()
        self.scale = scale
        self.class_centres = nn.Parameter(torch.empty(n_classes + 1, dim))  # A: C actions + background
        nn.init.xavier_uniform_(self.class_centres)
        self.fg_centre = nn.Parameter(-self.class_centres.detach()[-1:].clone())  # f = -A[C]

    def forward(self, x: Tensor, cu_seqlens: Varlen | Tensor, ops: str = "auto", class_wise: bool = True) -> Prediction:
        """``ops`` picks the class-wise pooling's implementation (the model passes its config's).
        ``class_wise=False`` leaves that pooling out (p_cw None): scoring videos reads only p_ca,
        the attention and the logits (``rsnet.model.predict``)."""
        cu_seqlens = as_varlen(cu_seqlens)
        centres = l2_normalize(self.class_centres)
        nx = l2_normalize(x)
        logits = self.scale * nx @ centres.T  # S (N, C+1)
        attention = torch.sigmoid(self.scale * (nx @ l2_normalize(self.fg_centre).T).squeeze(1))
        seg = segment_ids(cu_seqlens, x.shape[0])

        agnostic_weight = attention / (segment_sum(attention, cu_seqlens) + ATT_MASS_EPS)[seg]
        video_feat = rs_kernels.segment_weighted_sum(agnostic_weight, x, cu_seqlens)  # (B, D)
        p_ca = torch.softmax(self.scale * l2_normalize(video_feat) @ centres.T, dim=-1)
        p_cw = self._class_wise_scores(x, logits, centres, cu_seqlens, seg, ops) if class_wise else None
        return Prediction(p_ca, p_cw, attention, logits)

    def _class_wise_scores(self, x: Tensor, logits: Tensor, centres: Tensor, cu_seqlens: Varlen, seg: Tensor,
                           ops: str) -> Tensor:
        """p_cw (B, C+1): each class pools the snippets by its own attention sigmoid(S)."""
        class_att = torch.sigmoid(logits)
        class_weight = class_att / (segment_sum(class_att, cu_seqlens) + ATT_MASS_EPS)[seg]
        class_feats = rs_kernels.segment_matmul(class_weight, x, cu_seqlens, impl=ops)  # (B, C+1, D)
        return torch.softmax(self.scale * (l2_normalize(class_feats) * centres).sum(-1), dim=-1)

    def forward_each(self, xs: list[Tensor], cu_seqlens: Varlen | Tensor, ops: str = "auto",
                     class_wise: bool = True) -> list[Prediction]:
        """P(X) of several feature sets of the same videos (the branches) in one call.

        The sets go in as one packed batch of len(xs) x B videos, so each layer of the head runs
        once per step instead of once per branch: on a GPU, a third of the kernel launches.
        """
        cu_seqlens = as_varlen(cu_seqlens)
        if len(xs) == 1:
            return [self(xs[0], cu_seqlens, ops, class_wise)]
        joint = self(torch.cat(xs), cu_seqlens.tile(len(xs)), ops, class_wise)
        videos, snippets = [cu_seqlens.batch_size] * len(xs), [x.shape[0] for x in xs]
        p_cw = joint.p_cw.split(videos) if class_wise else [None] * len(xs)
        parts = (joint.p_ca.split(videos), p_cw, joint.attention.split(snippets),
                 joint.logits.split(snippets))
        return [Prediction(*branch) for branch in zip(*parts, strict=True)]
