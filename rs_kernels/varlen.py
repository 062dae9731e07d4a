"""Packed variable-length batches (flash-attention's varlen convention) and their metadata.

The snippets of B videos are concatenated into one (N, D) tensor; ``cu_seqlens`` (B+1,) int32 or
int64 holds the offsets, so video b owns rows ``cu_seqlens[b]:cu_seqlens[b+1]``. Shared by the
kernels, the references and the model so that every layer agrees on one layout.

Every layer of a step needs the offsets on the host too (checks, per-video splits, the longest
length, the kernels' grid); on a GPU each read of a device tensor is a host sync that stalls the
launch queue. So a batch's offsets travel as a :class:`Varlen`, built once per batch from host
values (as flash-attention passes ``max_seqlen`` and FLA ``cu_seqlens_cpu`` beside the device
offsets): the device offsets, the same offsets as host ints, and the kernels' block table, built
on first request and held by the object. The ops also take a plain ``cu_seqlens`` tensor, read
once per call into a :class:`Varlen` (free on the CPU, a sync on a GPU).

Across the ``torch.library.custom_op`` boundary (whose schemas take tensors and scalars, not
objects) only device tensors go: ``cu_seqlens`` and the block table's two tensors, whose length
is the kernels' grid. The host offsets stay on the Python side of the op: the public functions
check the packed rows against them before calling it, and derive from them what the op needs as
plain ints (the walk's ``max_m``).

The helpers that read host values run eagerly under ``torch.compile`` (``torch.compiler.disable``,
a graph break each): ints derived from the offsets inside a dynamic-shape graph made inductor emit
code that names unbound symbols (torch 2.13; tests/kernels/test_padded.py compiles the model), and
guards on them would recompile the graph for every batch's lengths.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
OFFSET_DTYPES = (torch.int32, torch.int64)


class BlockTable(NamedTuple):
    """The kernels' grid over a packed batch: T blocks of ``block_t`` rows, none straddling two videos."""

    video: Tensor  # (G,) int64: the video of each block, -1 for none (a batch with no rows: G = 1)
    first: Tensor  # (B+1,) int64: video b's blocks are first[b]:first[b+1]


@dataclass(frozen=True, eq=False)
class Varlen:
    """The offsets of one packed batch, on the device and on the host.

    ``cu_seqlens`` (B+1,) int32 or int64 on the ops' device; ``offsets`` the same values as host
    ints. Build it with :meth:`from_lengths`, :meth:`uniform`, :meth:`tile` or :meth:`to` (which
    know the host values), or :meth:`from_cu_seqlens` (one read of the tensor). The two must agree:
    edit neither in place. A copy (``copy.copy``) shares the block tables built so far. B = 0 (an
    empty memory-bank read) is a valid layout; the ops themselves need B >= 1.
    """

    cu_seqlens: Tensor
    offsets: tuple[int, ...]
    _block_tables: dict[int, BlockTable] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        cu, offsets = self.cu_seqlens, self.offsets
        if cu.dim() != 1 or cu.dtype not in OFFSET_DTYPES or cu.shape[0] != len(offsets) or not offsets:
            raise ValueError(f"cu_seqlens must be a 1-D int32/int64 tensor of B+1 >= 1 offsets matching the host "
                             f"offsets ({len(offsets)}), got {tuple(cu.shape)} {cu.dtype}")
        lens = self.lengths
        if offsets[0] != 0 or min(lens, default=0) < 0:
            raise ValueError(f"offsets must start at 0 and never decrease, got {list(offsets[:17])}")

    @classmethod
    def from_lengths(cls, lengths, device=None, dtype: torch.dtype = torch.int64) -> Varlen:
        """Offsets of sequences of the given lengths (host ints)."""
        offsets = (0, *itertools.accumulate(int(n) for n in lengths))
        # non_blocking: CUDA stages the few bytes and returns; a blocking copy would wait for the GPU
        return cls(torch.tensor(offsets, dtype=dtype).to(device, non_blocking=True), offsets)

    @classmethod
    @torch.compiler.disable
    def uniform(cls, batch: int, length: int, device=None) -> Varlen:
        """``batch`` sequences of the same ``length`` (e.g. K representatives per video), built on the device."""
        cu = torch.arange(batch + 1, dtype=torch.int64, device=device) * length
        return cls(cu, tuple(b * length for b in range(batch + 1)))

    @classmethod
    @torch.compiler.disable
    def from_cu_seqlens(cls, cu_seqlens: Tensor) -> Varlen:
        """The metadata of an offsets tensor: its values are read to the host (a sync on a GPU)."""
        if cu_seqlens.dim() != 1 or cu_seqlens.dtype not in OFFSET_DTYPES:
            raise ValueError(f"cu_seqlens must be a 1-D int32/int64 tensor, got {tuple(cu_seqlens.shape)} {cu_seqlens.dtype}")
        return cls(cu_seqlens, tuple(cu_seqlens.tolist()))

    @torch.compiler.disable
    def tile(self, copies: int) -> Varlen:
        """``copies`` packed batches of the same sequences laid one after another, built on the device."""
        total = self.total
        cu = torch.cat([self.cu_seqlens, *(self.cu_seqlens[1:] + i * total for i in range(1, copies))])
        return Varlen(cu, self.offsets + tuple(o + i * total for i in range(1, copies) for o in self.offsets[1:]))

    def to(self, device, non_blocking: bool = False) -> Varlen:
        """The same offsets on ``device`` (this object if they are there already)."""
        moved = self.cu_seqlens.to(device, non_blocking=non_blocking)
        return self if moved is self.cu_seqlens else Varlen(moved, self.offsets)

    @property
    def batch_size(self) -> int:
        return len(self.offsets) - 1

    @property
    def total(self) -> int:
        """N, the packed rows."""
        return self.offsets[-1]

    @property
    def lengths(self) -> list[int]:
        return [end - start for start, end in zip(self.offsets, self.offsets[1:])]

    @property
    def max_seqlen(self) -> int:
        return max(self.lengths, default=0)

    @torch.compiler.disable
    def block_table(self, block_t: int) -> BlockTable:
        """The kernels' grid for blocks of ``block_t`` rows, built once per block size and held here."""
        table = self._block_tables.get(block_t)
        if table is None:
            table = self._block_tables[block_t] = _build_block_table(self, block_t)
        return table


def _build_block_table(varlen: Varlen, block_t: int) -> BlockTable:
    """Built on the device from cu_seqlens (no host-to-device copy); its size from the host lengths."""
    cu = varlen.cu_seqlens
    nblk = (cu[1:] - cu[:-1] + block_t - 1) // block_t
    first = torch.zeros(varlen.batch_size + 1, dtype=torch.int64, device=cu.device)
    first[1:] = nblk.cumsum(0)
    grid = max(sum((n + block_t - 1) // block_t for n in varlen.lengths), 1)
    video = torch.searchsorted(first[1:], torch.arange(grid, dtype=torch.int64, device=cu.device), right=True)
    return BlockTable(torch.where(video < varlen.batch_size, video, -1), first)


@torch.compiler.disable
def as_varlen(cu_seqlens: Varlen | Tensor) -> Varlen:
    """A :class:`Varlen` as it is, or one read from an offsets tensor."""
    return cu_seqlens if isinstance(cu_seqlens, Varlen) else Varlen.from_cu_seqlens(cu_seqlens)


def device_offsets(cu_seqlens: Varlen | Tensor) -> Tensor:
    return cu_seqlens.cu_seqlens if isinstance(cu_seqlens, Varlen) else cu_seqlens


def check_packed_meta(x: Tensor, offsets: dict[str, Tensor], same_device: dict[str, Tensor]) -> None:
    """Metadata checks shared by the ops (no data access, so they also run on fake tensors):
    x is a floating (N, D) tensor, each offsets vector a 1-D int32/int64 tensor of B+1 >= 2
    entries, and every tensor named in ``offsets`` or ``same_device`` lives on x's device."""
    if x.dim() != 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"x must be a floating tensor, got {x.dtype}")
    for name, cu in offsets.items():
        if cu.dim() != 1 or cu.shape[0] < 2 or cu.dtype not in OFFSET_DTYPES:
            raise ValueError(f"{name} must be a 1-D int32/int64 tensor of B+1 >= 2 offsets, got "
                             f"{tuple(cu.shape)} {cu.dtype}")
    for name, t in {**offsets, **same_device}.items():
        if t.device != x.device:
            raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")


@torch.compiler.disable
def check_varlen(varlen: Varlen, total: int, name: str = "cu_seqlens", allow_empty: bool = False) -> list[int]:
    """Raise a ValueError naming ``name`` unless its offsets run over ``total`` rows (and, unless
    ``allow_empty``, every sequence has one); return the lengths. Host values only."""
    if varlen.total != total:
        raise ValueError(f"{name} must run from 0 to {total} (the packed rows), got 0..{varlen.total}")
    lens = varlen.lengths
    if not allow_empty and min(lens) == 0:
        raise ValueError(f"{name} has empty (zero-length) sequences: lengths {lens[:16]}")
    return lens


@torch.compiler.disable
def max_seqlen(cu_seqlens: Varlen | Tensor) -> int:
    """The longest sequence's length (the width of a padded copy), from the host offsets."""
    return as_varlen(cu_seqlens).max_seqlen


def seqlens(cu_seqlens: Varlen | Tensor) -> Tensor:
    return device_offsets(cu_seqlens).diff()


def cu_seqlens_from_lengths(lengths, device=None) -> Tensor:
    """The offsets tensor (int64) of sequences of the given lengths (a tensor, or host ints).

    What the ops take in the simplest form; a :class:`Varlen` (``Varlen.from_lengths``) also carries
    the host offsets, so that the ops need not read them back from a GPU."""
    if isinstance(lengths, Tensor):
        lengths = lengths.to(device=device, dtype=torch.int64)
        return torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
    return Varlen.from_lengths(lengths, device).cu_seqlens


def segment_ids(cu_seqlens: Varlen | Tensor, total: int) -> Tensor:
    """(N,) index of the sequence each packed row belongs to."""
    cu = device_offsets(cu_seqlens)
    ids = torch.arange(cu.numel() - 1, device=cu.device)
    return torch.repeat_interleave(ids, cu.diff(), output_size=total)


def segment_positions(cu_seqlens: Varlen | Tensor, total: int) -> tuple[Tensor, Tensor]:
    """(N,) the sequence each packed row belongs to, and the row's position in it."""
    seg = segment_ids(cu_seqlens, total)
    return seg, torch.arange(total, device=seg.device) - device_offsets(cu_seqlens)[seg]


def pad(values: Tensor, cu_seqlens: Varlen | Tensor, width: int, fill: float = 0.0) -> Tensor:
    """Packed (N, ...) -> (B, width, ...), ``fill`` past each sequence's end (width >= the longest)."""
    out = values.new_full((device_offsets(cu_seqlens).numel() - 1, width, *values.shape[1:]), fill)
    if values.shape[0]:
        out = out.index_put(segment_positions(cu_seqlens, values.shape[0]), values)
    return out


def unpad(padded: Tensor, cu_seqlens: Varlen | Tensor, total: int) -> Tensor:
    """(B, width, ...) -> packed (total, ...): the inverse of :func:`pad`."""
    if total == 0:
        return padded.new_zeros(0, *padded.shape[2:])
    return padded[segment_positions(cu_seqlens, total)]


def segment_sum(values: Tensor, cu_seqlens: Varlen | Tensor) -> Tensor:
    """(B, ...) sums over the rows of each sequence, in a fixed order (deterministic)."""
    return torch.segment_reduce(values, "sum", offsets=device_offsets(cu_seqlens), axis=0, initial=0)


@torch.compiler.disable
def split(values: Tensor, cu_seqlens: Varlen | Tensor) -> tuple[Tensor, ...]:
    """The per-sequence views of a packed tensor (lengths from the host offsets)."""
    return torch.split(values, as_varlen(cu_seqlens).lengths)
