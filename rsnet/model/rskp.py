"""The RSKP model on packed variable-length batches (docs/design.md).

Main branch o = P(X); intra-video branch m = P(RW(X, mu)) with mu the EM representatives;
inter-video branch r = P(RW(X, Y_e)) with Y_e read from the memory bank; the switches of
supplementary Tables 2 and 3 change what mu summarizes and what the walks go toward (``summarize``,
``rsnet.model.variants``). The heavy ops (EM attention, random walk) come from ``rs_kernels``; ``ops``
picks their implementation.
The batch's offsets arrive as a ``rs_kernels.varlen.Varlen`` (or a plain offsets tensor, read once)
and go as that object to every op, so no layer reads them back from the device.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

import rs_kernels
from rs_kernels.reference import l2_normalize
from rs_kernels.varlen import Varlen, as_varlen

from ..config import Config
from . import variants
from .head import Prediction, PredictionModule

MemoryRead = Callable[[Tensor, Tensor], tuple[Tensor, Varlen | Tensor]]  # (mu, p_mu) -> (Y_e, its offsets)


class RSKPOutput(NamedTuple):
    main: Prediction  # o
    intra: Prediction | None  # m
    inter: Prediction | None  # r
    mu: Tensor | None  # (B, K, D) online representatives
    p_mu: Tensor | None  # (B, K, C+1) their class probabilities (memory-bank scores)
    features: Tensor | None = None  # (N, D) X, the embedded snippets
    walked: Tensor | None = None  # (N, D) F^a, the intra-video branch's features (the feature losses of Table 3)


class RSKP(nn.Module):
    def __init__(self, cfg: Config, n_classes: int):
        super().__init__()
        self.cfg = cfg
        self.n_classes = n_classes
        self.embedding = nn.Linear(cfg.feature_dim, cfg.embed_dim)
        nn.init.xavier_uniform_(self.embedding.weight)  # the official weights_init_random
        nn.init.zeros_(self.embedding.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = PredictionModule(n_classes, cfg.embed_dim, cfg.scale)
        self.mu0 = nn.Parameter(torch.empty(cfg.n_representatives, cfg.embed_dim))
        nn.init.xavier_uniform_(self.mu0)

    def embed(self, x: Tensor) -> Tensor:
        """X = Dropout(ReLU(X_in W + b)); with embed_precision bf16 the GEMM runs in bf16 and X
        returns to float32, so EM attention, the random walk and the heads stay in float32."""
        if self.cfg.embed_precision == "bf16":
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                h = self.embedding(x)
            h = h.float()
        else:
            h = self.embedding(x)
        return self.dropout(torch.relu(h))

    def representatives(self, x: Tensor, cu_seqlens: Varlen | Tensor) -> Tensor:
        return rs_kernels.em_attention(x, cu_seqlens, self.mu0, self.cfg.em_iters, self.cfg.tau, impl=self.cfg.ops)

    def propagate(self, x: Tensor, cu_seqlens: Varlen | Tensor, y: Tensor, y_cu_seqlens: Varlen | Tensor) -> Tensor:
        return rs_kernels.random_walk(x, cu_seqlens, y, y_cu_seqlens, self.cfg.walk_weight, self.cfg.tau,
                                      impl=self.cfg.ops)

    def summarize(self, x: Tensor, cu_seqlens: Varlen, class_wise: bool = True) -> variants.OnlineSummary:
        """The online representatives of embedded snippets and the features the walks move.

        ``representatives`` em (the paper's): EM on X. foreground / background: EM on X S_f or
        X (1 - S_f), S_f the main branch's class-agnostic attention (detached), the other part added
        back after each walk. topk: the K/2 highest and K/2 lowest snippets by S_f, no EM.
        """
        how = self.cfg.representatives
        if how == "em":
            return variants.OnlineSummary(self.representatives(x, cu_seqlens), x, None, None)
        main = self.head(x, cu_seqlens, self.cfg.ops, class_wise)
        foreground = main.attention.detach()
        if how == "topk":
            mu = variants.top_and_bottom_snippets(x, foreground, cu_seqlens, self.cfg.n_representatives // 2)
            return variants.OnlineSummary(mu, x, None, main)
        walk_input, kept = variants.split_by_foreground(x, foreground, how)
        return variants.OnlineSummary(self.representatives(walk_input, cu_seqlens), walk_input, kept, main)

    def bank_candidates(self, x: Tensor, cu_seqlens: Varlen | Tensor) -> tuple[Tensor, Tensor]:
        """(mu, p_mu) of packed snippets: what the memory bank takes, without the walks and the heads."""
        mu = self.summarize(self.embed(x), as_varlen(cu_seqlens), class_wise=False).mu
        return mu, self.class_probabilities(mu)

    def class_probabilities(self, mu: Tensor) -> Tensor:
        """p_mu (B, K, C+1): how each representative scores against the class centres."""
        return torch.softmax(self.cfg.scale * l2_normalize(mu) @ l2_normalize(self.head.class_centres).T, dim=-1)

    def forward(self, x: Tensor, cu_seqlens: Varlen | Tensor, memory: MemoryRead | None = None,
                class_wise: bool = True) -> RSKPOutput:
        """x (N, D_in) packed snippets. ``memory(mu, p_mu) -> (Y_e, its offsets)`` enables the
        inter-video branch; it is called once the representatives are known and before any walk,
        so it may insert them into the bank as it reads (the official order, video by video).
        ``class_wise=False``: the branches' p_cw are left out (None), as scoring videos needs none."""
        cu_seqlens = as_varlen(cu_seqlens)
        x = self.embed(x)
        if not self.cfg.intra:
            return RSKPOutput(self.head(x, cu_seqlens, self.cfg.ops, class_wise), None, None, None, None)
        online = self.summarize(x, cu_seqlens, class_wise)
        p_mu = self.class_probabilities(online.mu)
        batch, k, dim = online.mu.shape
        bank_rows = None if memory is None else memory(online.mu, p_mu)
        targets = variants.walk_targets((online.mu.reshape(batch * k, dim), Varlen.uniform(batch, k, x.device)),
                                        bank_rows, self.cfg.fusion)
        branches = [variants.add_kept(self.propagate(online.walk_input, cu_seqlens, *y), online.kept) for y in targets]
        if online.main is None:
            main, intra, *inter = self.head.forward_each([x, *branches], cu_seqlens, self.cfg.ops, class_wise)
        else:
            main, (intra, *inter) = online.main, self.head.forward_each(branches, cu_seqlens, self.cfg.ops, class_wise)
        return RSKPOutput(main, intra, inter[0] if inter else None, online.mu, p_mu, x, branches[0])
