"""EM attention: K representative snippets per video (DESIGN §1)."""
from __future__ import annotations

from torch import Tensor

from . import reference
from ._dispatch import resolve_impl


def em_attention(x: Tensor, cu_seqlens: Tensor, mu0: Tensor, iters: int = 2, tau: float = 5.0,
                 impl: str | None = None) -> Tensor:
    """mu (B, K, D) from packed snippets x (N, D); mu0 (K, D) shared by all videos or (B, K, D)."""
    if resolve_impl(impl, x) == "triton":
        raise NotImplementedError("the Triton EM-attention kernel is not built yet; use impl='reference'")
    return reference.em_attention(x, cu_seqlens, mu0, iters, tau)
