"""rs_kernels: fused ops for representative-snippet models on packed variable-length videos."""
from ._dispatch import IMPLS
from . import membank  # its ops load the csrc/ extension on their first call, not this import
from .em_attention import em_attention
from .random_walk import random_walk
from .segment_matmul import segment_matmul
from .segment_weighted_sum import segment_weighted_sum
from .varlen import Varlen, cu_seqlens_from_lengths

__all__ = ["IMPLS", "em_attention", "random_walk", "segment_matmul", "segment_weighted_sum", "Varlen",
           "cu_seqlens_from_lengths"]
