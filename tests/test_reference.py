"""The specification agrees with itself: the Woodbury random walk equals the dense Eq. 10 solve."""
import pytest
import torch

from rs_kernels import reference
from rs_kernels.varlen import cu_seqlens_from_lengths


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("m", [1, 5, 8, 20])
def test_woodbury_equals_dense_on_mixed_lengths(m):
    gen = torch.Generator().manual_seed(m)
    lengths = [1, 2, 7, 300, 2615]
    d = 48
    x = torch.randn(sum(lengths), d, generator=gen, dtype=torch.float64).relu()
    y = torch.randn(len(lengths) * m, d, generator=gen, dtype=torch.float64)
    cu = cu_seqlens_from_lengths(lengths)
    ycu = cu_seqlens_from_lengths([m] * len(lengths))
    dense = reference.random_walk(x, cu, y, ycu, 0.5, 5.0, method="dense")
    fast = reference.random_walk(x, cu, y, ycu, 0.5, 5.0, method="woodbury")
    assert torch.isfinite(fast).all()
    for b in range(len(lengths)):  # per video, so a short video's error is not hidden by a long one
        rows = slice(int(cu[b]), int(cu[b + 1]))
        assert _rel(fast[rows], dense[rows]) <= 1e-10


def test_no_representative_gives_scaled_input():
    x = torch.rand(5, 4, dtype=torch.float64)
    out = reference.random_walk(x, cu_seqlens_from_lengths([5]), x[:0], cu_seqlens_from_lengths([0]), 0.5, 5.0)
    assert torch.allclose(out, 0.5 * x)


def test_em_attention_mean_when_one_centre():
    """With K = 1 the softmax over centres is 1 everywhere: mu is the plain mean of the snippets."""
    x = torch.rand(9, 6, dtype=torch.float64)
    mu = reference.em_attention(x, cu_seqlens_from_lengths([4, 5]), torch.randn(1, 6, dtype=torch.float64))
    assert torch.allclose(mu[0, 0], x[:4].mean(0)) and torch.allclose(mu[1, 0], x[4:].mean(0))
