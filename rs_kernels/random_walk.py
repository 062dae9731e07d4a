"""Bipartite random walk of each video's snippets toward its representatives (Woodbury form)."""
from __future__ import annotations

from torch import Tensor

from . import reference
from ._dispatch import resolve_impl


def random_walk(x: Tensor, cu_seqlens: Tensor, y: Tensor, y_cu_seqlens: Tensor, w: float = 0.5,
                tau: float = 5.0, impl: str | None = None) -> Tensor:
    """X* (N, D); video b walks toward y[y_cu_seqlens[b]:y_cu_seqlens[b+1]]."""
    if resolve_impl(impl, x) == "triton":
        raise NotImplementedError("the Triton random-walk kernel is not built yet; use impl='reference'")
    return reference.random_walk(x, cu_seqlens, y, y_cu_seqlens, w, tau)
