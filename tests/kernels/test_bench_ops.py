"""Micro-benchmarks of EM attention, the random walk, the head's pooling and the memory bank at small sizes.

Skipped unless asked for (see conftest.py). Reference (PyTorch) implementations on every device,
the Triton ones on CUDA; forward and forward+backward apart, as bench/kernels.py does at full size.
"""
from __future__ import annotations

import math

import pytest
import torch

from rs_kernels import em_attention, membank, random_walk, segment_matmul
from rs_kernels.varlen import Varlen, cu_seqlens_from_lengths

LENGTHS = [37, 250, 64, 120, 8, 401]  # one small step of THUMOS14-like videos
D, K, ITERS, TAU, W = 256, 8, 2, 5.0, 0.5
C, S, B = 20, 5, 10  # memory bank: classes, slots, videos per step


def _impls(device):
    return ["reference", "triton"] if device.type == "cuda" else ["reference"]


@pytest.fixture
def packed(device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(sum(LENGTHS), D, generator=gen).relu_().to(device)
    cu = cu_seqlens_from_lengths(LENGTHS, device)
    mu0 = (torch.randn(K, D, generator=gen) / math.sqrt(D)).to(device)
    y = torch.randn(len(LENGTHS) * K, D, generator=gen).relu_().to(device)
    return x, cu, mu0, y, Varlen.uniform(len(LENGTHS), K, device)


def _bench(benchmark, run, name, device, impl, backward, op, args, trained, grad):
    """Times op(*args) without autograd, or with the args at positions ``trained`` as leaves, backward(grad)."""
    if impl not in _impls(device):
        pytest.skip("Triton runs on CUDA only here (the interpreter is not a benchmark)")
    benchmark.group = f"{name} {'fwd+bwd' if backward else 'fwd'} {device.type}"
    if backward:
        leaves = [a.clone().requires_grad_() if i in trained else a for i, a in enumerate(args)]
        benchmark(run(lambda: op(*leaves).backward(grad)))
    else:
        with torch.no_grad():
            benchmark(run(lambda: op(*args)))


IMPLS = pytest.mark.parametrize("impl", ["reference", "triton"])
PASSES = pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])


@IMPLS
@PASSES
def test_em_attention(benchmark, run, device, packed, impl, backward):
    x, cu, mu0, _, _ = packed
    _bench(benchmark, run, "em_attention", device, impl, backward,
           lambda a, c, m: em_attention(a, c, m, ITERS, TAU, impl=impl), (x, cu, mu0), {0, 2},
           torch.randn(len(LENGTHS), K, D, device=device))


@IMPLS
@PASSES
def test_random_walk(benchmark, run, device, packed, impl, backward):
    x, cu, _, y, ycu = packed
    _bench(benchmark, run, "random_walk", device, impl, backward,
           lambda a, c, b, bc: random_walk(a, c, b, bc, W, TAU, impl=impl), (x, cu, y, ycu), {0, 2},
           torch.randn_like(x))


@IMPLS
@PASSES
def test_segment_matmul(benchmark, run, device, packed, impl, backward):
    x, cu, _, _, _ = packed
    weights = torch.rand(x.shape[0], C + 1, device=device)  # the head's class-wise attention shares
    _bench(benchmark, run, "segment_matmul", device, impl, backward,
           lambda w, a, c: segment_matmul(w, a, c, impl=impl), (weights, x, cu), {0, 1},
           torch.randn(len(LENGTHS), C + 1, D, device=device))


@pytest.fixture
def bank(device):
    gen = torch.Generator().manual_seed(1)
    rows = torch.randn(C, S, D, generator=gen)
    scores = torch.rand(C, S, generator=gen).sort(dim=1, descending=True).values
    count = torch.full((C,), S, dtype=torch.int64)  # full, as after the warm-up fill
    labels = torch.zeros(B, C, dtype=torch.bool)
    labels[torch.arange(B), torch.randint(0, C, (B,), generator=gen)] = True
    labels[0, (labels[0].nonzero()[0, 0] + 1) % C] = True  # a video of two classes
    cand = torch.randn(B, K, D, generator=gen)
    cand_scores = torch.softmax(torch.randn(B, K, C, generator=gen), dim=-1)
    return [t.to(device) for t in (rows, scores, count, labels, cand, cand_scores)]


def test_membank_gather(benchmark, run, device, bank):
    rows, _, count, labels, _, _ = bank
    benchmark.group = f"membank {device.type}"
    benchmark(run(lambda: membank.membank_gather(rows, count, labels)))


def test_membank_insert(benchmark, run, device, bank):
    rows, scores, count, labels, cand, cand_scores = bank
    benchmark.group = f"membank {device.type}"
    benchmark(run(lambda: membank.membank_insert_topk_(rows, scores, count, cand, cand_scores, labels)))
