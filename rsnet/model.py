"""The RSKP model on packed variable-length batches (docs/design.md).

Main branch o = P(X); intra-video branch m = P(RW(X, mu)) with mu the EM representatives;
inter-video branch r = P(RW(X, Y_e)) with Y_e read from the memory bank; the switches of
supplementary Tables 2 and 3 change what mu summarizes and what the walks go toward (``summarize``,
``rsnet.variants``). The heavy ops (EM attention, random walk) come from ``rs_kernels``; ``ops``
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
from rs_kernels.varlen import Varlen, as_varlen, segment_ids, segment_sum

from . import variants
from .config import Config

ATT_MASS_EPS = 1e-5  # abar = a / (sum_t a + 1e-5), as the official code
MemoryRead = Callable[[Tensor, Tensor], tuple[Tensor, Varlen | Tensor]]  # (mu, p_mu) -> (Y_e, its offsets)


class Prediction(NamedTuple):
    """P(X) of a packed batch: video probabilities (B, C+1) of both heads, attention (N,), logits (N, C+1)."""

    p_ca: Tensor
    p_cw: Tensor
    attention: Tensor
    logits: Tensor


class RSKPOutput(NamedTuple):
    main: Prediction  # o
    intra: Prediction | None  # m
    inter: Prediction | None  # r
    mu: Tensor | None  # (B, K, D) online representatives
    p_mu: Tensor | None  # (B, K, C+1) their class probabilities (memory-bank scores)
    features: Tensor | None = None  # (N, D) X, the embedded snippets
    walked: Tensor | None = None  # (N, D) F^a, the intra-video branch's features (the feature losses of Table 3)


class PredictionModule(nn.Module):
    """FAC-Net's class-agnostic attention head and MIL head (supplementary §1)."""

    def __init__(self, n_classes: int, dim: int, scale: float):
        super().__init__()
        self.scale = scale
        self.class_centres = nn.Parameter(torch.empty(n_classes + 1, dim))  # A: C actions + background
        nn.init.xavier_uniform_(self.class_centres)
        self.fg_centre = nn.Parameter(-self.class_centres.detach()[-1:].clone())  # f = -A[C]

    def forward(self, x: Tensor, cu_seqlens: Varlen | Tensor, ops: str = "auto") -> Prediction:
        """``ops`` picks the class-wise pooling's implementation (the model passes its config's)."""
        cu_seqlens = as_varlen(cu_seqlens)
        centres = l2_normalize(self.class_centres)
        nx = l2_normalize(x)
        logits = self.scale * nx @ centres.T  # S (N, C+1)
        attention = torch.sigmoid(self.scale * (nx @ l2_normalize(self.fg_centre).T).squeeze(1))
        seg = segment_ids(cu_seqlens, x.shape[0])

        agnostic_weight = attention / (segment_sum(attention, cu_seqlens) + ATT_MASS_EPS)[seg]
        video_feat = segment_sum(agnostic_weight[:, None] * x, cu_seqlens)  # (B, D)
        p_ca = torch.softmax(self.scale * l2_normalize(video_feat) @ centres.T, dim=-1)

        class_att = torch.sigmoid(logits)
        class_weight = class_att / (segment_sum(class_att, cu_seqlens) + ATT_MASS_EPS)[seg]
        class_feats = rs_kernels.segment_matmul(class_weight, x, cu_seqlens, impl=ops)  # (B, C+1, D)
        p_cw = torch.softmax(self.scale * (l2_normalize(class_feats) * centres).sum(-1), dim=-1)  # (B, C+1)
        return Prediction(p_ca, p_cw, attention, logits)

    def forward_each(self, xs: list[Tensor], cu_seqlens: Varlen | Tensor, ops: str = "auto") -> list[Prediction]:
        """P(X) of several feature sets of the same videos (the branches) in one call.

        The sets go in as one packed batch of len(xs) x B videos, so each layer of the head runs
        once per step instead of once per branch: on a GPU, a third of the kernel launches.
        """
        cu_seqlens = as_varlen(cu_seqlens)
        if len(xs) == 1:
            return [self(xs[0], cu_seqlens, ops)]
        joint = self(torch.cat(xs), cu_seqlens.tile(len(xs)), ops)
        videos, snippets = [cu_seqlens.batch_size] * len(xs), [x.shape[0] for x in xs]
        parts = (joint.p_ca.split(videos), joint.p_cw.split(videos), joint.attention.split(snippets),
                 joint.logits.split(snippets))
        return [Prediction(*branch) for branch in zip(*parts, strict=True)]


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

    def summarize(self, x: Tensor, cu_seqlens: Varlen) -> variants.OnlineSummary:
        """The online representatives of embedded snippets and the features the walks move.

        ``representatives`` em (the paper's): EM on X. foreground / background: EM on X S_f or
        X (1 - S_f), S_f the main branch's class-agnostic attention (detached), the other part added
        back after each walk. topk: the K/2 highest and K/2 lowest snippets by S_f, no EM.
        """
        how = self.cfg.representatives
        if how == "em":
            return variants.OnlineSummary(self.representatives(x, cu_seqlens), x, None, None)
        main = self.head(x, cu_seqlens, self.cfg.ops)
        foreground = main.attention.detach()
        if how == "topk":
            mu = variants.top_and_bottom_snippets(x, foreground, cu_seqlens, self.cfg.n_representatives // 2)
            return variants.OnlineSummary(mu, x, None, main)
        walk_input, kept = variants.split_by_foreground(x, foreground, how)
        return variants.OnlineSummary(self.representatives(walk_input, cu_seqlens), walk_input, kept, main)

    def bank_candidates(self, x: Tensor, cu_seqlens: Varlen | Tensor) -> tuple[Tensor, Tensor]:
        """(mu, p_mu) of packed snippets: what the memory bank takes, without the walks and the heads."""
        mu = self.summarize(self.embed(x), as_varlen(cu_seqlens)).mu
        return mu, self.class_probabilities(mu)

    def class_probabilities(self, mu: Tensor) -> Tensor:
        """p_mu (B, K, C+1): how each representative scores against the class centres."""
        return torch.softmax(self.cfg.scale * l2_normalize(mu) @ l2_normalize(self.head.class_centres).T, dim=-1)

    def forward(self, x: Tensor, cu_seqlens: Varlen | Tensor, memory: MemoryRead | None = None) -> RSKPOutput:
        """x (N, D_in) packed snippets. ``memory(mu, p_mu) -> (Y_e, its offsets)`` enables the
        inter-video branch; it is called once the representatives are known and before any walk,
        so it may insert them into the bank as it reads (the official order, video by video)."""
        cu_seqlens = as_varlen(cu_seqlens)
        x = self.embed(x)
        if not self.cfg.intra:
            return RSKPOutput(self.head(x, cu_seqlens, self.cfg.ops), None, None, None, None)
        online = self.summarize(x, cu_seqlens)
        p_mu = self.class_probabilities(online.mu)
        batch, k, dim = online.mu.shape
        bank_rows = None if memory is None else memory(online.mu, p_mu)
        targets = variants.walk_targets((online.mu.reshape(batch * k, dim), Varlen.uniform(batch, k, x.device)),
                                        bank_rows, self.cfg.fusion)
        branches = [variants.add_kept(self.propagate(online.walk_input, cu_seqlens, *y), online.kept) for y in targets]
        if online.main is None:
            main, intra, *inter = self.head.forward_each([x, *branches], cu_seqlens, self.cfg.ops)
        else:
            main, (intra, *inter) = online.main, self.head.forward_each(branches, cu_seqlens, self.cfg.ops)
        return RSKPOutput(main, intra, inter[0] if inter else None, online.mu, p_mu, x, branches[0])

    @torch.no_grad()
    def predict(self, x: Tensor, cu_seqlens: Varlen | Tensor) -> tuple[Tensor, Tensor]:
        """Video scores (B, C+1) and the class activation sequence (N, C+1) (docs/design.md, Inference)."""
        out = self.forward(x, cu_seqlens)
        main = out.main
        if out.intra is None:
            return main.p_ca, torch.softmax(main.logits, dim=-1) * main.attention[:, None]
        fm, fi = self.cfg.fuse_main, self.cfg.fuse_intra
        scores = fm * main.p_ca + fi * out.intra.p_ca
        cas = (fm * torch.softmax(main.logits, -1) + fi * torch.softmax(out.intra.logits, -1)) * main.attention[:, None]
        return scores, cas
