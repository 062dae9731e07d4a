"""The CPU op w^T X per video (the head's class-agnostic pooling, csrc/segment_weighted_sum.cpp)
against its spec: the same bits as ``reference.segment_weighted_sum`` forward and backward in
float32 and float64 (what keeps the main job's numbers), the float64 reference of the sum to
1e-12 on odd shapes, gradcheck, and a clear error for every bad argument.
"""
import re

import pytest
import torch
from torch.library import opcheck

import rs_kernels
from rs_kernels import reference
from rs_kernels.membank import load_extension
from rs_kernels.varlen import Varlen

load_extension()  # the tests below that call torch.ops.rs_kernels.segment_weighted_sum itself

CASES = {  # name: (lengths, D)
    "one_row": ([1], 7),
    "mixed_with_empty": ([17, 0, 1000, 5, 0, 250], 33),
    "wide": ([3, 17, 40], 2048),
    "empty_batch_rows": ([0, 0], 5),
}


def _inputs(lengths, d, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    w = torch.rand(n, generator=gen, dtype=torch.float64).to(dtype)  # attention shares in [0, 1]
    x = torch.randn(n, d, generator=gen, dtype=torch.float64).relu().to(dtype)
    grad = torch.randn(len(lengths), d, generator=gen, dtype=torch.float64).to(dtype)
    return w, x, Varlen.from_lengths(lengths), grad


def _forward_backward(fn, w, x, varlen, grad):
    w, x = w.clone().requires_grad_(), x.clone().requires_grad_()
    out = fn(w, x, varlen)
    out.backward(grad)
    return out.detach(), w.grad, x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_same_bits_as_the_spec(case, dtype):
    w, x, varlen, grad = _inputs(*CASES[case], dtype, seed=len(case))
    ours = _forward_backward(rs_kernels.segment_weighted_sum, w, x, varlen, grad)
    spec = _forward_backward(reference.segment_weighted_sum, w, x, varlen, grad)
    for name, a, b in zip(("out", "dw", "dx"), ours, spec):
        assert a.dtype == b.dtype and not a.isnan().any(), name
        assert torch.equal(a, b), f"{name}: largest |diff| {(a - b).abs().max().item():.3g}"


@pytest.mark.parametrize("case", list(CASES))
def test_float32_close_to_the_float64_sum(case):
    w, x, varlen, _ = _inputs(*CASES[case], torch.float32, seed=1 + len(case))
    out = rs_kernels.segment_weighted_sum(w, x, varlen)
    exact = torch.stack([wb.double() @ xb.double() for wb, xb in zip(w.split(varlen.lengths), x.split(varlen.lengths))])
    assert not out.isnan().any()
    assert torch.allclose(out.double(), exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_the_spec(dtype):
    w, x, varlen, grad = _inputs([5, 0, 12], 9, dtype, seed=8)
    ours = _forward_backward(rs_kernels.segment_weighted_sum, w, x, varlen, grad)
    spec = _forward_backward(reference.segment_weighted_sum, w, x, varlen, grad)
    assert all(torch.equal(a, b) and a.dtype == dtype for a, b in zip(ours, spec))


def test_any_thread_count_gives_the_same_bits():
    w, x, varlen, _ = _inputs([301, 7, 0, 90, 512], 129, torch.float32, seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = rs_kernels.segment_weighted_sum(w, x, varlen)
        torch.set_num_threads(2)
        assert torch.equal(rs_kernels.segment_weighted_sum(w, x, varlen), one)
    finally:
        torch.set_num_threads(threads)


def test_gradcheck_float64():
    w, x, varlen, _ = _inputs([1, 3, 0, 2], 5, torch.float64, seed=3)
    torch.autograd.gradcheck(lambda a, b: rs_kernels.segment_weighted_sum(a, b, varlen),
                             (w.requires_grad_(), x.requires_grad_()))


def test_opcheck():
    w, x, varlen, _ = _inputs([4, 0, 3], 6, torch.float64, seed=4)
    opcheck(torch.ops.rs_kernels.segment_weighted_sum, (w.requires_grad_(), x, varlen.cu_seqlens))


def test_offsets_as_int32():
    w, x, varlen, _ = _inputs([4, 9], 6, torch.float32, seed=6)
    int32 = torch.ops.rs_kernels.segment_weighted_sum(w, x, varlen.cu_seqlens.int())
    assert torch.equal(int32, reference.segment_weighted_sum(w, x, varlen))


BAD = {  # name: (w, x, cu_seqlens) -> the error's words
    "x_1d": (lambda w, x, cu: (w, x[:, 0], cu), "x must be (N, D)"),
    "w_rows": (lambda w, x, cu: (w[1:], x, cu), "w must be (N,) with N = 7"),
    "w_dtype": (lambda w, x, cu: (w.double(), x, cu), "w must have x's dtype"),
    "x_int": (lambda w, x, cu: (w.long(), x.long(), cu), "x must be float32 or float64"),
    "cu_float": (lambda w, x, cu: (w, x, cu.float()), "cu_seqlens must be a 1-D int32/int64"),
    "cu_short_of_n": (lambda w, x, cu: (w, x, torch.tensor([0, 3, 6])), "must run from 0 to N = 7"),
    "cu_not_from_0": (lambda w, x, cu: (w, x, torch.tensor([1, 3, 7])), "must run from 0 to N = 7"),
    "cu_decreasing": (lambda w, x, cu: (w, x, torch.tensor([0, 5, 3, 7])), "must not decrease"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_raise_naming_them(case):
    w, x, varlen, _ = _inputs([3, 4], 5, torch.float32, seed=7)
    change, words = BAD[case]
    with pytest.raises(RuntimeError, match=re.escape(words)):
        torch.ops.rs_kernels.segment_weighted_sum(*change(w, x, varlen.cu_seqlens))
