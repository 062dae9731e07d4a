"""The two memory banks behind one interface (docs/design.md, "Memory bank").

``MemoryBank``, the paper's class-wise bank: per class, a queue of ``slots`` snippets kept in
descending score order. ``VideoBank``, supplementary Table 2's video-wise bank: one
momentum-updated entry of K representatives per training video. Both are modules of buffers, so
they are saved, restored and moved with the model's state, and both answer what training and the
commands ask of a bank:

- ``reset()``: empty it (the end of warm-up refills it);
- ``fill(mu, p_mu, labels, index)``: insert the representatives of videos (the warm-up's end);
- ``step_read(mu, p_mu, labels, index, epoch)``: the inter-video branch's memory for a piece of a
  training step, read and inserted as the official loop does (returns ``(Y_e, its offsets)``);
- ``class_entries(classes)``: each class's filled entries (none for the video-wise bank, which
  holds training videos' entries, not classes').

The work is done by the csrc/ extension's ops (``rs_kernels.membank``, C++ on CPU, CUDA on GPU),
which equal the pure-PyTorch spec in ``rs_kernels.reference`` bit for bit and check every argument
(a RuntimeError naming it); the extension loads on the first read or insert.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from rs_kernels import membank
from rs_kernels.varlen import Varlen

from ..config import Config
from .variants import Representatives


def make_bank(cfg: Config, n_classes: int, train_videos: np.ndarray, train_labels: np.ndarray) -> MemoryBank | VideoBank:
    """The run's bank: class-wise (the paper's) or, with ``bank`` video, one entry per training video
    (``train_videos`` their ids, ``train_labels`` (V, C) their classes, which pick read partners)."""
    if cfg.bank == "class":
        return MemoryBank(n_classes, cfg.bank_slots, cfg.embed_dim)
    return VideoBank(train_videos, train_labels, cfg.n_representatives, cfg.embed_dim, cfg.bank_momentum, cfg.seed)


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

    def step_read(self, mu: Tensor, p_mu: Tensor, labels: Tensor, index: Tensor, epoch: int) -> Representatives:
        """Video by video in the official order, each reading after the inserts of the videos
        before it (``read_in_order``; ``p_mu`` (B, K, C+1): its action columns score the inserts)."""
        return self.read_in_order(mu, p_mu[..., : self.scores.shape[0]], labels)

    def fill(self, mu: Tensor, p_mu: Tensor, labels: Tensor, index: Tensor) -> None:
        self.insert(mu, p_mu[..., : self.scores.shape[0]], labels)

    def class_entries(self, classes) -> list[tuple[int, Tensor]]:
        """(class, its filled entries (n, D)) for each of ``classes``."""
        return [(int(c), self.bank[c, : int(self.count[c])]) for c in classes]

    @torch.no_grad()
    def insert(self, candidates: Tensor, candidate_scores: Tensor, labels: Tensor) -> None:
        """candidates (B, K, D) representatives; candidate_scores (B, K, C) their class probabilities."""
        membank.membank_insert_topk_(self.bank, self.scores, self.count, candidates.detach().to(self.bank.dtype),
                                     candidate_scores.detach().to(self.scores.dtype), labels.bool())


class VideoBank(nn.Module):
    """Table 2's video-wise memory bank: one entry of K representatives per training video.

    ``entries`` (V, K, D) and ``filled`` (V,) are buffers, saved and moved with the model's state.
    The first insert of a video copies its representatives; later ones move the entry by momentum,
    ``entry <- m entry + (1 - m) mu`` (MoCo's update; ``rs_kernels.membank.membank_momentum_``). A
    video reads the entry of a *partner*: another training video sharing one of its classes, drawn
    afresh for each (seed, epoch, video), itself when no other video has its classes.
    """

    entries: Tensor
    filled: Tensor

    def __init__(self, video_ids: np.ndarray, labels: np.ndarray, rows: int, dim: int, momentum: float, seed: int):
        super().__init__()
        self.register_buffer("entries", torch.zeros(len(video_ids), rows, dim))
        self.register_buffer("filled", torch.zeros(len(video_ids), dtype=torch.bool))
        self.momentum, self.seed = momentum, seed
        self.row_of = {int(v): row for row, v in enumerate(video_ids)}
        self.labels = np.asarray(labels) > 0  # (V, C): which classes each training video has

    def reset(self) -> None:
        self.entries.zero_()
        self.filled.zero_()

    def step_read(self, mu: Tensor, p_mu: Tensor, labels: Tensor, index: Tensor, epoch: int) -> Representatives:
        """Each video reads its partner's entry, then the piece's entries move toward its representatives."""
        rows = self.read(index, epoch)
        self.insert(mu, index)
        return rows

    def fill(self, mu: Tensor, p_mu: Tensor, labels: Tensor, index: Tensor) -> None:
        self.insert(mu, index)

    def class_entries(self, classes) -> list[tuple[int, Tensor]]:
        """None: its entries are training videos', not classes'."""
        return []

    def _rows(self, index: Tensor) -> Tensor:
        return torch.tensor([self.row_of[v] for v in index.tolist()], dtype=torch.int64, device=self.entries.device)

    def partner(self, video_id: int, epoch: int) -> int:
        """The row a video reads at ``epoch``: a uniform draw among the other videos sharing a class."""
        row = self.row_of[video_id]
        shares = (self.labels & self.labels[row]).any(axis=1)
        shares[row] = False
        candidates = np.flatnonzero(shares)
        if len(candidates) == 0:
            return row
        return int(np.random.default_rng([self.seed, epoch, video_id]).choice(candidates))

    def read(self, index: Tensor, epoch: int) -> Representatives:
        """(Y_e (B K, D), its offsets): each video's partner's entry, K rows a video."""
        rows = [self.partner(v, epoch) for v in index.tolist()]
        got = membank.membank_momentum_read(self.entries, torch.tensor(rows, dtype=torch.int64,
                                                                       device=self.entries.device))
        batch, k, dim = got.shape
        return got.reshape(batch * k, dim), Varlen.uniform(batch, k, got.device)

    @torch.no_grad()
    def insert(self, candidates: Tensor, index: Tensor) -> None:
        """candidates (B, K, D): the representatives of the videos ``index`` (B,), each in the batch once."""
        rows = self._rows(index)
        candidates = candidates.detach().to(self.entries.dtype)
        fresh = ~self.filled[rows]
        membank.membank_momentum_(self.entries, rows[fresh], candidates[fresh], 0.0)
        membank.membank_momentum_(self.entries, rows[~fresh], candidates[~fresh], self.momentum)
        self.filled[rows] = True


def buffer_bytes(module: nn.Module) -> int:
    """The bytes of a module's buffers: what a memory bank keeps."""
    return sum(b.numel() * b.element_size() for b in module.buffers())
