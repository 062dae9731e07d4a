"""Packed variable-length batches (flash-attention's varlen convention).

The snippets of B videos are concatenated into one (N, D) tensor; ``cu_seqlens`` (B+1,) int64
holds the offsets, so video b owns rows ``cu_seqlens[b]:cu_seqlens[b+1]``. Shared by the kernels,
the references and the model so that every layer agrees on one layout.
"""
from __future__ import annotations

import torch
from torch import Tensor


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_packed_meta(x: Tensor, offsets: dict[str, Tensor], same_device: dict[str, Tensor]) -> None:
    """Metadata checks shared by the ops (no data access, so they also run on fake tensors):
    x is a floating (N, D) tensor, each offsets vector a 1-D int32/int64 tensor of B+1 >= 2
    entries, and every tensor named in ``offsets`` or ``same_device`` lives on x's device."""
    if x.dim() != 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"x must be a floating tensor, got {x.dtype}")
    for name, cu in offsets.items():
        if cu.dim() != 1 or cu.shape[0] < 2 or cu.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"{name} must be a 1-D int32/int64 tensor of B+1 >= 2 offsets, got "
                             f"{tuple(cu.shape)} {cu.dtype}")
    for name, t in {**offsets, **same_device}.items():
        if t.device != x.device:
            raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")


def check_cu_seqlens(cu_seqlens: Tensor, total: int, name: str = "cu_seqlens", allow_empty: bool = False) -> None:
    """Raise a ValueError naming ``name`` unless it is a valid offsets vector for ``total`` rows."""
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"{name} must be a 1-D tensor of B+1 >= 2 offsets, got shape {tuple(cu_seqlens.shape)}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be int32 or int64, got {cu_seqlens.dtype}")
    first, last = int(cu_seqlens[0]), int(cu_seqlens[-1])
    if first != 0 or last != total:
        raise ValueError(f"{name} must run from 0 to {total} (the packed rows), got {first}..{last}")
    lens = cu_seqlens.diff()
    if bool((lens < 0).any()) or (not allow_empty and bool((lens == 0).any())):
        bad = "decreasing" if bool((lens < 0).any()) else "empty (zero-length) sequences"
        raise ValueError(f"{name} has {bad}: lengths {lens.tolist()[:16]}")


def seqlens(cu_seqlens: Tensor) -> Tensor:
    return cu_seqlens.diff()


def cu_seqlens_from_lengths(lengths, device=None) -> Tensor:
    lengths = torch.as_tensor(lengths, dtype=torch.int64, device=device)
    return torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])


def uniform_cu_seqlens(batch: int, length: int, device=None) -> Tensor:
    """Offsets of ``batch`` sequences of the same ``length`` (e.g. K representatives per video)."""
    return torch.arange(batch + 1, dtype=torch.int64, device=device) * length


def segment_ids(cu_seqlens: Tensor, total: int) -> Tensor:
    """(N,) index of the sequence each packed row belongs to."""
    batch = cu_seqlens.numel() - 1
    ids = torch.arange(batch, device=cu_seqlens.device)
    return torch.repeat_interleave(ids, seqlens(cu_seqlens), output_size=total)


def segment_sum(values: Tensor, cu_seqlens: Tensor) -> Tensor:
    """(B, ...) sums over the rows of each sequence, in a fixed order (deterministic)."""
    return torch.segment_reduce(values, "sum", offsets=cu_seqlens, axis=0, initial=0)


def split(values: Tensor, cu_seqlens: Tensor) -> tuple[Tensor, ...]:
    """The per-sequence views of a packed tensor (one host sync for the lengths)."""
    return torch.split(values, seqlens(cu_seqlens).tolist())
