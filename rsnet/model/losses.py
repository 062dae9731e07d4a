"""RSKP's training objective on packed batches (docs/design.md, Losses).

Every term is computed per video and summed over the videos of a step, as the official code sums
the losses of the 10 videos between two optimizer steps.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from rs_kernels.varlen import Varlen, max_seqlen, pad, segment_sum, seqlens

from ..config import Config
from .rskp import RSKPOutput

LABEL_EPS = 1e-8


class LossTerms(NamedTuple):
    total: Tensor
    fore: Tensor
    back: Tensor
    att: Tensor
    spl: Tensor


def normalized_cross_entropy(p: Tensor, target: Tensor) -> Tensor:
    """(B,) -sum_c (l_c / sum l) log p_c."""
    return -(target / (target.sum(-1, keepdim=True) + LABEL_EPS) * torch.log(p)).sum(-1)


def _padded(values: Tensor, cu_seqlens: Varlen | Tensor, fill: float) -> Tensor:
    """(B, T_max) copy of a per-snippet vector, padded with ``fill``: cheap, unlike padding x."""
    return pad(values, cu_seqlens, max_seqlen(cu_seqlens), fill)


def attention_normalization_loss(attention: Tensor, cu_seqlens: Varlen | Tensor) -> Tensor:
    """(B,) mean of the k lowest minus mean of the k highest attentions, k = max(T // 8, 1)."""
    k = torch.clamp(seqlens(cu_seqlens) // 8, min=1)

    def mean_of_first_k(ordered: Tensor) -> Tensor:
        keep = torch.arange(ordered.shape[1], device=ordered.device)[None] < k[:, None]
        return torch.where(keep, ordered, torch.zeros_like(ordered)).sum(1) / k

    top = torch.sort(_padded(attention, cu_seqlens, float("-inf")), dim=1, descending=True).values
    bottom = torch.sort(_padded(attention, cu_seqlens, float("inf")), dim=1).values
    return mean_of_first_k(bottom) - mean_of_first_k(top)


def pseudo_label_target_logits(out: RSKPOutput, cfg: Config) -> Tensor:
    """The logits whose softmax at ``spl_temperature`` is L_spl's target: the intra-video branch's,
    mixed with the inter-video branch's after warm-up (``pseudo_inter_mix``)."""
    if out.inter is None:
        return out.intra.logits
    return (1 - cfg.pseudo_inter_mix) * out.intra.logits + cfg.pseudo_inter_mix * out.inter.logits


def pseudo_label_loss(logits: Tensor, target_logits: Tensor, cu_seqlens: Varlen | Tensor, temperature: float) -> Tensor:
    """(B,) snippet-mean cross-entropy of softmax(logits / t) against the detached softmax(target / t)."""
    target = torch.softmax(target_logits.detach() / temperature, dim=-1)
    per_snippet = -(target * torch.log_softmax(logits / temperature, dim=-1)).sum(-1)
    return segment_sum(per_snippet, cu_seqlens) / seqlens(cu_seqlens)


def feature_propagation_loss(features: Tensor, walked: Tensor, cu_seqlens: Varlen | Tensor, norm: str) -> Tensor:
    """(B,) Table 3's feature losses: per video, the mean over its snippets and channels of |X - F^a|
    (``feature_l1``) or (X - F^a)^2 (``feature_l2``), F^a (the walked features) detached as L_spl's target is."""
    diff = features - walked.detach()
    per_snippet = (diff.abs() if norm == "feature_l1" else diff.square()).mean(-1)
    return segment_sum(per_snippet, cu_seqlens) / seqlens(cu_seqlens)


def rskp_loss(out: RSKPOutput, labels: Tensor, cu_seqlens: Varlen | Tensor, cfg: Config, after_warmup: bool) -> LossTerms:
    """L = L_fore + 0.2 L_back + 0.1 L_att + lambda_s L_spl, summed over the batch's videos (L_spl a feature
    loss under ``propagation_loss`` feature_l1 / feature_l2)."""
    no_background = torch.cat([labels, labels.new_zeros(labels.shape[0], 1)], dim=1)
    with_background = torch.cat([labels, labels.new_ones(labels.shape[0], 1)], dim=1)
    branches = [(out.main, 1.0), (out.intra, 1.0), (out.inter, cfg.inter_weight)]
    zero = labels.new_zeros(labels.shape[0])
    fore, back = zero, zero
    for branch, weight in branches:
        if branch is not None:
            fore = fore + weight * normalized_cross_entropy(branch.p_ca, no_background)
            back = back + weight * normalized_cross_entropy(branch.p_cw, with_background)
    att = attention_normalization_loss(out.main.attention, cu_seqlens) if cfg.att_loss else zero
    spl = zero
    spl_weight = cfg.spl_weight_after_warmup if after_warmup else cfg.spl_weight
    if cfg.pseudo_label and out.intra is not None:
        if cfg.propagation_loss == "pseudo_label":
            target = pseudo_label_target_logits(out, cfg)
            spl = pseudo_label_loss(out.main.logits, target, cu_seqlens, cfg.spl_temperature)
        else:  # Table 3: the walk supervises the features instead of the scores
            spl = feature_propagation_loss(out.features, out.walked, cu_seqlens, cfg.propagation_loss)
    per_video = fore + cfg.back_weight * back + cfg.att_weight * att + spl_weight * spl
    return LossTerms(per_video.sum(), fore.sum(), back.sum(), att.sum(), spl.sum())
