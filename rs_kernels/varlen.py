"""Packed variable-length batches (flash-attention's varlen convention).

The snippets of B videos are concatenated into one (N, D) tensor; ``cu_seqlens`` (B+1,) int64
holds the offsets, so video b owns rows ``cu_seqlens[b]:cu_seqlens[b+1]``. Shared by the kernels,
the references and the model so that every layer agrees on one layout.
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HOST_OFFSETS = "_rs_host_offsets"  # attribute of an offsets tensor: its values as ints (see keep)


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


# The host-int helpers run eagerly under torch.compile (a graph break each): the offsets are data a
# graph cannot trace, and ints derived from them inside a dynamic-shape graph made inductor emit
# code that names unbound symbols (torch 2.13; tests/test_padded.py compiles the model).
@torch.compiler.disable
def host_offsets(cu_seqlens: Tensor) -> tuple[int, ...]:
    """The offsets as Python ints, read from the tensor once and then kept on it.

    Every layer of a step needs the same offsets on the host (checks, per-video splits, the largest
    length); on a GPU each read is a host sync that stalls the launch queue. So the first read is
    remembered on the tensor with its version counter (an in-place change is read again), and
    offsets built from host values (:func:`cu_seqlens_from_lengths`, :func:`uniform_cu_seqlens`,
    :func:`offsets_to`, :func:`tile_offsets`) carry them from the start: the model's layers and ops
    read none back. Writes that bypass the version counter (``t.data[i] = v``, a NumPy or DLPack
    view of the memory) are not seen: offsets are not meant to be edited in place.
    """
    cached = _cached(cu_seqlens)
    return cached if cached is not None else _remember(cu_seqlens, tuple(cu_seqlens.tolist()))


def kept(t: Tensor, name: str, key=None):
    """What :func:`keep` stored on ``t`` under ``name`` and ``key``, if ``t`` has not changed since."""
    stored = getattr(t, name, None)
    if stored is None or t.is_inference() or stored[:2] != (t._version, key):
        return None
    return stored[2]


def keep(t: Tensor, name: str, value, key=None):
    """Store ``value``, derived from ``t``'s data, on ``t`` with its version counter (an in-place
    change invalidates it; inference tensors have no version: nothing is kept). Returns ``value``."""
    if not t.is_inference():
        setattr(t, name, (t._version, key, value))
    return value


def _cached(cu_seqlens: Tensor) -> tuple[int, ...] | None:
    return kept(cu_seqlens, _HOST_OFFSETS)


def _remember(cu_seqlens: Tensor, offsets: tuple[int, ...]) -> tuple[int, ...]:
    """Keep ``offsets``, the values of ``cu_seqlens``, on it."""
    return keep(cu_seqlens, _HOST_OFFSETS, offsets)


@torch.compiler.disable
def host_seqlens(cu_seqlens: Tensor) -> list[int]:
    return _lengths(host_offsets(cu_seqlens))


@torch.compiler.disable
def max_seqlen(cu_seqlens: Tensor) -> int:
    """The longest sequence's length (the width of a padded copy), from the host offsets."""
    return max(host_seqlens(cu_seqlens))


def _lengths(offsets: tuple[int, ...]) -> list[int]:
    return [end - start for start, end in zip(offsets, offsets[1:])]


@torch.compiler.disable
def check_cu_seqlens(cu_seqlens: Tensor, total: int, name: str = "cu_seqlens", allow_empty: bool = False) -> list[int]:
    """Raise a ValueError naming ``name`` unless it is a valid offsets vector for ``total`` rows;
    return the lengths (host ints)."""
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"{name} must be a 1-D tensor of B+1 >= 2 offsets, got shape {tuple(cu_seqlens.shape)}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be int32 or int64, got {cu_seqlens.dtype}")
    offsets = host_offsets(cu_seqlens)
    if offsets[0] != 0 or offsets[-1] != total:
        raise ValueError(f"{name} must run from 0 to {total} (the packed rows), got {offsets[0]}..{offsets[-1]}")
    lens = _lengths(offsets)
    if min(lens) < 0 or (not allow_empty and min(lens) == 0):
        bad = "decreasing" if min(lens) < 0 else "empty (zero-length) sequences"
        raise ValueError(f"{name} has {bad}: lengths {lens[:16]}")
    return lens


def seqlens(cu_seqlens: Tensor) -> Tensor:
    return cu_seqlens.diff()


def cu_seqlens_from_lengths(lengths, device=None) -> Tensor:
    """Offsets of sequences of the given lengths (a tensor, or host ints, whose offsets are kept)."""
    if isinstance(lengths, Tensor):
        lengths = lengths.to(device=device, dtype=torch.int64)
        return torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
    offsets = (0, *itertools.accumulate(int(n) for n in lengths))
    cu = torch.tensor(offsets, dtype=torch.int64)
    _remember(cu, offsets)
    # non_blocking: CUDA stages the few bytes and returns; a blocking copy would wait for the GPU
    return offsets_to(cu, device, non_blocking=True) if device is not None else cu


def uniform_cu_seqlens(batch: int, length: int, device=None) -> Tensor:
    """Offsets of ``batch`` sequences of the same ``length`` (e.g. K representatives per video)."""
    cu = torch.arange(batch + 1, dtype=torch.int64, device=device) * length
    _remember(cu, tuple(b * length for b in range(batch + 1)))
    return cu


def tile_offsets(cu_seqlens: Tensor, copies: int) -> Tensor:
    """Offsets of ``copies`` packed batches of the same sequences laid one after another.

    Built on the device from ``cu_seqlens`` (no host-to-device copy), with host offsets kept.
    """
    offsets = host_offsets(cu_seqlens)
    total = offsets[-1]
    tiled = torch.cat([cu_seqlens, *(cu_seqlens[1:] + i * total for i in range(1, copies))])
    _remember(tiled, offsets + tuple(o + i * total for i in range(1, copies) for o in offsets[1:]))
    return tiled


def offsets_to(cu_seqlens: Tensor, device, non_blocking: bool = False) -> Tensor:
    """cu_seqlens on ``device``, keeping its host offsets (kept ones, or read from a CPU tensor: free)."""
    moved = cu_seqlens.to(device, non_blocking=non_blocking)
    if moved is not cu_seqlens and (cu_seqlens.device.type == "cpu" or _cached(cu_seqlens) is not None):
        _remember(moved, host_offsets(cu_seqlens))
    return moved


def segment_ids(cu_seqlens: Tensor, total: int) -> Tensor:
    """(N,) index of the sequence each packed row belongs to."""
    batch = cu_seqlens.numel() - 1
    ids = torch.arange(batch, device=cu_seqlens.device)
    return torch.repeat_interleave(ids, seqlens(cu_seqlens), output_size=total)


def segment_positions(cu_seqlens: Tensor, total: int) -> tuple[Tensor, Tensor]:
    """(N,) the sequence each packed row belongs to, and the row's position in it."""
    seg = segment_ids(cu_seqlens, total)
    return seg, torch.arange(total, device=cu_seqlens.device) - cu_seqlens[seg]


def pad(values: Tensor, cu_seqlens: Tensor, width: int, fill: float = 0.0) -> Tensor:
    """Packed (N, ...) -> (B, width, ...), ``fill`` past each sequence's end (width >= the longest)."""
    out = values.new_full((cu_seqlens.numel() - 1, width, *values.shape[1:]), fill)
    if values.shape[0]:
        out = out.index_put(segment_positions(cu_seqlens, values.shape[0]), values)
    return out


def unpad(padded: Tensor, cu_seqlens: Tensor, total: int) -> Tensor:
    """(B, width, ...) -> packed (total, ...): the inverse of :func:`pad`."""
    if total == 0:
        return padded.new_zeros(0, *padded.shape[2:])
    return padded[segment_positions(cu_seqlens, total)]


def segment_sum(values: Tensor, cu_seqlens: Tensor) -> Tensor:
    """(B, ...) sums over the rows of each sequence, in a fixed order (deterministic)."""
    return torch.segment_reduce(values, "sum", offsets=cu_seqlens, axis=0, initial=0)


def split(values: Tensor, cu_seqlens: Tensor) -> tuple[Tensor, ...]:
    """The per-sequence views of a packed tensor (lengths from :func:`host_offsets`)."""
    return torch.split(values, host_seqlens(cu_seqlens))
