"""The class-wise memory bank of representative snippets (docs/design.md, "Memory bank").

Per class, a queue of ``slots`` snippets kept in descending score order. The bank is a module of
buffers, so it is saved, restored and moved with the model's state. In training the videos read
and insert in the official order, one after another (``read_in_order``): each reads the bank
after the inserts of the videos before it, then inserts its own representatives.

The work is done by the csrc/ extension's ops (``rs_kernels.membank``, C++ on CPU, CUDA on GPU),
which equal the pure-PyTorch spec in ``rs_kernels.reference`` bit for bit and check every argument
(a RuntimeError naming it); the extension loads on the first read or insert.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rs_kernels import membank
from rs_kernels.varlen import Varlen


class MemoryBank(nn.Module):
    bank: Tensor
    scores: Tensor
    count: Tensor

    def __init__(self, n_classes: int, slots: int, dim: int):
        super().__init__()
        self.register_buffer("bank", torch.zeros(n_classes, slots, dim))
        self.register_buffer("scores", torch.zeros(n_classes, slots))
        self.register_buffer("count", torch.zeros(n_classes, dtype=torch.int64))

    def reset(self) -> None:
        self.bank.zero_()
        self.scores.zero_()
        self.count.zero_()

    def read(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(Y_e (sum M_b, D), y_cu_seqlens): the filled slots of each video's classes, packed."""
        # labels (B, C) are multi-hot floats: as bool, the ops skip their 0/1 value check (a sync on CUDA)
        return membank.membank_gather(self.bank, self.count, labels.bool())

    def read_in_order(self, candidates: Tensor, candidate_scores: Tensor, labels: Tensor) -> tuple[Tensor, Varlen]:
        """Video by video, as the official loop: read its classes' filled slots, then insert its
        candidates (B, K, D) scored (B, K, C). Returns the reads packed as ``read`` packs them.
        One op for the whole piece (``membank_gather_insert_``), equal to that loop bit for bit."""
        return membank.membank_gather_insert_(self.bank, self.scores, self.count,
                                              candidates.detach().to(self.bank.dtype),
                                              candidate_scores.detach().to(self.scores.dtype), labels.bool())

    @torch.no_grad()
    def insert(self, candidates: Tensor, candidate_scores: Tensor, labels: Tensor) -> None:
        """candidates (B, K, D) representatives; candidate_scores (B, K, C) their class probabilities."""
        membank.membank_insert_topk_(self.bank, self.scores, self.count, candidates.detach().to(self.bank.dtype),
                                     candidate_scores.detach().to(self.scores.dtype), labels.bool())
