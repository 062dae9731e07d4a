"""Per-video w^T X on packed input: out[b] = sum_t w_t x_t over the rows of video b, (B, D).

This is the prediction head's class-agnostic pooling: the video feature, the snippets weighted by
their normalized attention. The spec (``reference.segment_weighted_sum``) multiplies w into X and
sums with ``torch.segment_reduce``: an (N, D) product written out, then read back a column at a
time. On the CPU the csrc/ extension's ``rs_kernels::segment_weighted_sum`` reads X once and gives
the same bits, forward and backward (``csrc/segment_weighted_sum.cpp``), in float32 and float64;
elsewhere (other devices, half precision) the spec runs.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import reference
from .membank import load_extension
from .varlen import Varlen, as_varlen

KERNEL_DTYPES = (torch.float32, torch.float64)  # the C++ kernel's; other dtypes (bf16, fp16) run the spec


def segment_weighted_sum(w: Tensor, x: Tensor, cu_seqlens: Varlen | Tensor) -> Tensor:
    """(B, D): out[b] = w[rows of b]^T x[rows of b], for w (N,) and x (N, D) packed alike.

    cu_seqlens: a :class:`~rs_kernels.varlen.Varlen`, or an offsets tensor. The C++ op checks every
    argument (a ``RuntimeError`` naming it)."""
    seqs = as_varlen(cu_seqlens)
    if x.device.type != "cpu" or x.dtype not in KERNEL_DTYPES:
        return reference.segment_weighted_sum(w, x, seqs)
    load_extension()
    return torch.ops.rs_kernels.segment_weighted_sum(w, x, seqs.cu_seqlens)
