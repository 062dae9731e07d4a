"""The class-wise memory bank of representative snippets (DESIGN §1, Memory bank).

Per class, a queue of ``slots`` snippets kept in descending score order. The bank is a module of
buffers, so it is saved, restored and moved with the model's state. Reads and inserts are
batched over a whole step: the step's videos read the bank as it was before the step, and their
candidates go in once after it (the result equals inserting the videos one by one).

The work is done by the csrc/ extension's ops (``rs_kernels.membank``, C++ on CPU, CUDA on GPU),
which equal the pure-PyTorch spec in ``rs_kernels.reference`` bit for bit.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rs_kernels import membank


class MemoryBank(nn.Module):
    bank: Tensor
    scores: Tensor
    count: Tensor

    def __init__(self, n_classes: int, slots: int, dim: int):
        super().__init__()
        self.register_buffer("bank", torch.zeros(n_classes, slots, dim))
        self.register_buffer("scores", torch.zeros(n_classes, slots))
        self.register_buffer("count", torch.zeros(n_classes, dtype=torch.int64))

    @property
    def n_classes(self) -> int:
        return self.bank.shape[0]

    def reset(self) -> None:
        self.bank.zero_()
        self.scores.zero_()
        self.count.zero_()

    def _check_labels(self, labels: Tensor) -> Tensor:
        if labels.dim() != 2 or labels.shape[1] != self.n_classes:
            raise ValueError(f"labels must be (B, {self.n_classes}), got {tuple(labels.shape)}")
        return labels.bool()

    def read(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(Y_e (sum M_b, D), y_cu_seqlens): the filled slots of each video's classes, packed."""
        return membank.membank_gather(self.bank, self.count, self._check_labels(labels))

    @torch.no_grad()
    def insert(self, candidates: Tensor, candidate_scores: Tensor, labels: Tensor) -> None:
        """candidates (B, K, D) representatives; candidate_scores (B, K, C) their class probabilities."""
        labels = self._check_labels(labels)
        if candidate_scores.shape[-1] != self.n_classes:
            raise ValueError(f"candidate_scores must end in {self.n_classes} classes, got {tuple(candidate_scores.shape)}")
        membank.membank_insert_topk_(self.bank, self.scores, self.count, candidates.detach().to(self.bank.dtype),
                                     candidate_scores.detach().to(self.scores.dtype), labels)
