"""No T x T tensor anywhere: the ops' largest allocation, forward and backward, is no larger than x.

The profiler records every tensor allocation by the ops' PyTorch side (the launchers' buffers,
the padded solve, autograd's saved tensors). The dense form of the walk is the control: the probe
must see its T x T system, or it proves nothing. Peak memory on the GPU is bench/kernels.py's.
"""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from rs_kernels import em_attention, random_walk, reference
from rs_kernels.varlen import Varlen, cu_seqlens_from_lengths

T, D, M = 1500, 32, 8  # one long video: a T x T float32 is 9 MB, x is 0.19 MB


def _largest_allocation(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(e.self_cpu_memory_usage for e in prof.events())


def _inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, D, generator=gen).relu().requires_grad_()
    y = torch.randn(M, D, generator=gen).relu().requires_grad_()
    mu0 = torch.randn(M, D, generator=gen).requires_grad_()
    return x, cu_seqlens_from_lengths([T]), y, Varlen.uniform(1, M), mu0


@pytest.mark.parametrize("impl", ["triton", "padded"])
def test_no_allocation_above_the_size_of_x(impl):
    x, cu, y, ycu, mu0 = _inputs()
    walk = _largest_allocation(lambda: random_walk(x, cu, y, ycu, impl=impl).sum().backward())
    em = _largest_allocation(lambda: em_attention(x, cu, mu0, impl=impl).sum().backward())
    assert max(walk, em) <= x.nbytes, (walk, em, x.nbytes)


def test_the_probe_sees_the_dense_walks_t_by_t_system():
    x, cu, y, ycu, _ = _inputs()
    dense = _largest_allocation(lambda: reference.random_walk(x, cu, y, ycu, method="dense").sum().backward())
    assert dense >= T * T * x.element_size()
